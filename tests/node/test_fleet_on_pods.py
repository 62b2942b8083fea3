"""The fleet on real pods: helm install, a pool at work, the safe restart and faults.

Everything here runs as real containers of our image on the real node: the operator, the exporter,
the migration hook Job and the worker Pods that the operator builds. The tests run in file order
and share one install (the `fleet` fixture) and one pool, as a user's cluster would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from rq.job import Job
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from finex_workers import control, domain
from finex_workers.core.settings import Settings
from finex_workers.infra.redisconn import get_queue
from finex_workers.runtime import recompute
from tests.node.conftest import migrated
from tests.support import nodefleet
from tests.support.fleet import probe
from tests.support.nodefleet import Fleet
from tests.support.waiting import wait_for

POOL = "fleet"
QUEUES = ("matrix", "growth", "probability")


def pool_body(fleet: Fleet) -> dict[str, Any]:
    return nodefleet.pool_body(fleet, POOL)


def settings_for(fleet: Fleet) -> Settings:
    return Settings(redis_url=fleet.services.redis_url, database_url=fleet.services.db_url)


def worker_pods(fleet: Fleet, queue: str) -> list[dict[str, Any]]:
    pods = fleet.json("pods", "-l", f"finex.io/pool={POOL},finex.io/queue={queue}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def rolled_out(fleet: Fleet, queue: str, replicas: int) -> bool:
    """The queue's Deployment runs exactly `replicas` Pods, all of its current template and
    ready. Counting ready Pods is not enough: during a rollout, the Pod of the previous template
    is still ready and not yet deleted."""
    [deployment] = fleet.json("deployments", "-l", f"finex.io/pool={POOL},finex.io/queue={queue}")[
        "items"
    ]
    status = deployment.get("status", {})
    return bool(
        status.get("observedGeneration", 0) >= deployment["metadata"]["generation"]
        and status.get("replicas") == replicas  # no Pod of the previous template left
        and status.get("updatedReplicas") == replicas
        and status.get("readyReplicas") == replicas
        and len(worker_pods(fleet, queue)) == replicas
    )


def pool_ready(fleet: Fleet) -> bool:
    body = fleet.json("fwp", POOL)
    conditions = body.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ledger(fleet: Fleet, job_ids: list[str]) -> dict[str, str]:
    """Where each job is: exactly one of finished / a queue / a registry; fails on none or two."""
    conn = fleet.redis()
    places: dict[str, list[str]] = {j: [] for j in job_ids}
    for q in QUEUES:
        queued = {x.decode() for x in conn.lrange(get_queue(q, conn).key, 0, -1)}
        registries = {
            "finished": FinishedJobRegistry(q, conn).get_job_ids(),
            "started": StartedJobRegistry(q, conn).get_job_ids(),
            "failed": FailedJobRegistry(q, conn).get_job_ids(),
            "scheduled": ScheduledJobRegistry(q, conn).get_job_ids(),
            "deferred": DeferredJobRegistry(q, conn).get_job_ids(),
        }
        for job_id in job_ids:
            if job_id in queued:
                places[job_id].append(f"{q}:queued")
            for name, ids in registries.items():
                if job_id in ids:
                    places[job_id].append(f"{q}:{name}")
    wrong = {j: p for j, p in places.items() if len(p) != 1}
    assert not wrong, f"jobs lost or in two places: {wrong}"
    return {j: p[0] for j, p in places.items()}


def probe_runs(fleet: Fleet) -> dict[str, int]:
    with fleet.db() as db:
        rows = db.execute("SELECT probe_id, runs FROM finex_probes").fetchall()
    return {str(r[0]): int(r[1]) for r in rows}  # type: ignore[call-overload]


def test_helm_install_runs_every_pod_as_a_real_container(fleet: Fleet) -> None:
    pods = fleet.json("pods")["items"]
    running = {p["metadata"]["name"]: p for p in pods if p["status"].get("phase") == "Running"}
    kinds = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in running.values()}
    assert {"operator", "exporter"} <= kinds, kinds
    for pod in running.values():
        assert pod["spec"]["nodeName"] == fleet.cluster.real_node_name
        assert ready(pod), pod["metadata"]["name"]
        [status] = pod["status"]["containerStatuses"]
        assert status["containerID"].startswith("containerd://")
        assert status["restartCount"] == 0, pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        assert "httpGet" in container["livenessProbe"], pod["metadata"]["name"]
        assert "httpGet" in container["readinessProbe"], pod["metadata"]["name"]
    # The migration hook Job ran in a container and migrated the database the Pods use.
    assert migrated(fleet.services.db_url)
    # The exporter in its Pod reads Redis: its log has no error, and kubectl logs works.
    exporter = next(
        n
        for n, p in running.items()
        if p["metadata"]["labels"].get("app.kubernetes.io/component") == "exporter"
    )
    assert (
        "serving" in fleet.kubectl("logs", exporter).stdout + fleet.kubectl("logs", exporter).stderr
    )


def test_a_pool_on_real_pods_finishes_a_full_recompute(fleet: Fleet) -> None:
    conn = fleet.redis()
    conn.flushdb()
    with fleet.db() as db:
        summary = domain.seed(db, assets=200, scenarios=12, replace=True)
    fleet.kubectl("apply", "-f", "-", input=json.dumps(pool_body(fleet)))
    wait_for(
        "the pool Ready (every worker Pod ready: a live worker in Redis)",
        lambda: pool_ready(fleet),
        timeout=180,
    )
    for q in QUEUES:
        [pod] = worker_pods(fleet, q)
        assert ready(pod)
        container = pod["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        # Each worker is named after its Pod: Redis tells which Pod is busy.
        names = [w.name for w in control.live_workers(conn, q)]
        assert names, q
        assert all(f".{pod['metadata']['name']}." in n for n in names), names
    started = time.monotonic()
    plan = recompute.enqueue_full(conn, settings_for(fleet))
    assert plan.created > 0
    assert recompute.wait_until_idle(conn, timeout=240) == 0
    took = time.monotonic() - started
    with fleet.db() as db:
        row = db.execute("SELECT count(*) FROM impact_scores").fetchone()
        growth = db.execute(
            "SELECT count(*) FROM assets WHERE growth_updated_at IS NOT NULL"
        ).fetchone()
    assert row is not None
    assert row[0] == 200 * 12, (row, summary)
    assert growth is not None
    assert growth[0] == 200
    for q in QUEUES:
        assert control.queue_state(conn, q).failed == 0, control.list_dlq(conn, q)
    print(f"\nfull recompute through the Pods: {took:.1f}s for {row[0]} impact rows")


def test_safe_restart_on_real_pods_commits_the_job_in_flight_and_loses_nothing(
    fleet: Fleet,
) -> None:
    conn = fleet.redis()
    settings = settings_for(fleet)
    old = {p["metadata"]["name"] for p in worker_pods(fleet, "growth")}
    held = probe(conn, settings, "growth", "restart-held", hold=6)
    wait_for("the held job to run", lambda: control.queue_state(conn, "growth").active == 1)
    backlog = [probe(conn, settings, "growth", f"restart-backlog-{n}") for n in range(40)]
    fleet.kubectl("annotate", "--overwrite", "fwp", POOL, "finex.io/restart=growth@n1")
    seen: list[str] = []

    def done() -> bool:
        restart = fleet.json("fwp", POOL).get("status", {}).get("restart", {})
        phase = restart.get("phase")
        if phase and (not seen or seen[-1] != phase):
            seen.append(phase)
        return restart.get("requestedValue") == "growth@n1" and phase == "Done"

    wait_for("the restart to finish", done, timeout=240, every=0.2)
    restart = fleet.json("fwp", POOL)["status"]["restart"]
    assert restart["result"] == "Succeeded", restart
    phases = [h["phase"] for h in restart["history"]]
    assert phases == ["Pausing", "Draining", "Stopping", "Starting", "Resuming", "Done"], phases
    new = {p["metadata"]["name"] for p in worker_pods(fleet, "growth")}
    assert new, old
    assert not (new & old), (old, new)
    wait_for(
        "the backlog drained by the new Pod", lambda: recompute.outstanding(conn) == 0, timeout=120
    )
    places = ledger(fleet, [held, *backlog])
    assert set(places.values()) == {"growth:finished"}, places
    runs = probe_runs(fleet)
    assert runs["restart-held"] == 1  # it committed once, before its Pod was stopped
    assert all(runs[f"restart-backlog-{n}"] == 1 for n in range(40))
    finished = Job.fetch(held, connection=conn)
    assert finished.worker_name is not None
    assert any(f".{name}." in finished.worker_name for name in old)  # the old Pod ran it


def test_kubectl_delete_of_a_busy_worker_pod_finishes_its_job(fleet: Fleet) -> None:
    conn = fleet.redis()
    settings = settings_for(fleet)
    [pod] = worker_pods(fleet, "matrix")
    name = pod["metadata"]["name"]
    held = probe(conn, settings, "matrix", "delete-held", hold=5)
    wait_for("the job to run", lambda: control.queue_state(conn, "matrix").active == 1)
    started = time.monotonic()
    fleet.kubectl("delete", "pod", name, "--wait=true", "--timeout=120s")
    took = time.monotonic() - started
    assert took < 60 + 30  # inside the grace period (jobTimeoutSeconds + margin)
    places = ledger(fleet, [held])
    assert places[held] == "matrix:finished", places
    assert probe_runs(fleet)["delete-held"] == 1
    wait_for(
        "a new matrix Pod ready",
        lambda: any(ready(p) for p in worker_pods(fleet, "matrix")),
        timeout=120,
    )


def container_id(pod: dict[str, Any]) -> str:
    [status] = pod["status"]["containerStatuses"]
    return str(status["containerID"]).removeprefix("containerd://")


def test_sigkill_of_a_busy_workers_container_recovers_its_job(fleet: Fleet) -> None:
    conn = fleet.redis()
    settings = settings_for(fleet)
    [pod] = worker_pods(fleet, "probability")
    held = probe(conn, settings, "probability", "sigkill-held", hold=30)
    wait_for("the job to run", lambda: control.queue_state(conn, "probability").active == 1)
    killed = time.monotonic()
    # SIGKILL of the container's PID 1 (the supervisor) through containerd: the kernel takes the
    # whole PID namespace with it, mid-transaction; the kubelet restarts the container.
    fleet.cluster.ctr("task", "kill", "--signal", "SIGKILL", container_id(pod))
    wait_for(
        "the job recovered and finished",
        lambda: Job.fetch(held, connection=conn).get_status(refresh=True).value == "finished",
        timeout=240,
    )
    recovered = time.monotonic() - killed
    places = ledger(fleet, [held])
    assert places[held] == "probability:finished", places
    assert probe_runs(fleet)["sigkill-held"] == 1  # the killed attempt rolled back
    [again] = worker_pods(fleet, "probability")
    assert again["metadata"]["name"] == pod["metadata"]["name"]
    assert again["status"]["containerStatuses"][0]["restartCount"] >= 1
    print(f"\nSIGKILLed container's job finished again after {recovered:.1f}s")


def test_operator_killed_during_draining_finishes_the_restart(fleet: Fleet) -> None:
    conn = fleet.redis()
    settings = settings_for(fleet)
    held = probe(conn, settings, "matrix", "operator-kill-held", hold=10)
    wait_for("the job to run", lambda: control.queue_state(conn, "matrix").active == 1)
    backlog = [probe(conn, settings, "matrix", f"operator-kill-{n}") for n in range(10)]
    fleet.kubectl("annotate", "--overwrite", "fwp", POOL, "finex.io/restart=matrix@n2")

    def phase() -> str | None:
        restart = fleet.json("fwp", POOL).get("status", {}).get("restart", {})
        return restart.get("phase") if restart.get("requestedValue") == "matrix@n2" else None

    wait_for("Draining", lambda: phase() == "Draining", timeout=60, every=0.2)
    [operator] = [
        p["metadata"]["name"]
        for p in fleet.json("pods")["items"]
        if p["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"
    ]
    fleet.kubectl("delete", "pod", operator, "--grace-period=0", "--force")
    wait_for("the restart Done under the new operator", lambda: phase() == "Done", timeout=240)
    restart = fleet.json("fwp", POOL)["status"]["restart"]
    assert restart["result"] == "Succeeded", restart
    wait_for("the backlog drained", lambda: recompute.outstanding(conn) == 0, timeout=120)
    places = ledger(fleet, [held, *backlog])
    assert set(places.values()) == {"matrix:finished"}, places
    runs = probe_runs(fleet)
    assert runs["operator-kill-held"] == 1
    assert all(runs[f"operator-kill-{n}"] == 1 for n in range(10))


def test_a_containerd_restart_under_running_jobs_loses_nothing(fleet: Fleet) -> None:
    conn = fleet.redis()
    settings = settings_for(fleet)
    [pod] = worker_pods(fleet, "growth")
    held = probe(conn, settings, "growth", "containerd-held", hold=8)
    wait_for("the job to run", lambda: control.queue_state(conn, "growth").active == 1)
    down = fleet.cluster.restart_containerd()
    after = [probe(conn, settings, "growth", f"containerd-after-{n}") for n in range(5)]
    wait_for("every job finished", lambda: recompute.outstanding(conn) == 0, timeout=120)
    places = ledger(fleet, [held, *after])
    assert set(places.values()) == {"growth:finished"}, places
    runs = probe_runs(fleet)
    assert runs["containerd-held"] == 1
    assert all(runs[f"containerd-after-{n}"] == 1 for n in range(5))
    # The container outlived containerd: same Pod, no restart, still Ready.
    [again] = worker_pods(fleet, "growth")
    assert again["metadata"]["name"] == pod["metadata"]["name"]
    assert (
        again["status"]["containerStatuses"][0]["restartCount"]
        == (pod["status"]["containerStatuses"][0]["restartCount"])
    )
    wait_for(
        "the Pod Ready", lambda: all(ready(p) for p in worker_pods(fleet, "growth")), timeout=60
    )
    print(f"\ncontainerd was down {down:.1f}s; the running job and the container survived")


def test_scale_in_on_real_pods_spares_the_busy_pod(fleet: Fleet) -> None:
    """Issue 11 on real containers: 4 busy growth Pods, 3 jobs finish, scale to 1."""
    conn = fleet.redis()
    settings = settings_for(fleet)
    body = nodefleet.pool_body(fleet, POOL)
    for queue in body["spec"]["queues"]:
        if queue["name"] == "growth":
            queue.update(replicas=4, concurrency=1)
    body["spec"]["database"]["connectionBudget"] = 20
    applied = time.monotonic()
    nodefleet.apply(fleet, body)
    # replicas 1 -> 4 and concurrency 2 -> 1: the old ReplicaSet is scaled up, then rolled to
    # the new template, so old Pods (2 workers each) are created and deleted again while they
    # start. Such a Pod used to lose its SIGTERM (a container's PID 1 drops a signal it has no
    # handler for yet; runtime.early_stop) and kept 2 live workers until the grace period's
    # SIGKILL, 90 s: the old single wait ("4 live growth workers" within 60 s, after "4 ready
    # Pods", which an old Pod can satisfy) failed whenever that happened. Wait for each
    # condition in turn, each with a bound that fits it.
    timeline: list[str] = []
    terminating: dict[str, float] = {}
    dumped: set[str] = set()

    def observe() -> tuple[list[dict[str, Any]], list[str]]:
        """The growth Pods (terminating ones too) and the live workers' names; logs changes."""
        pods = fleet.json("pods", "-l", f"finex.io/pool={POOL},finex.io/queue=growth")["items"]
        live = sorted(w.name for w in control.live_workers(conn, "growth"))
        state = (
            ", ".join(
                sorted(
                    f"{p['metadata']['labels'].get('pod-template-hash', '?')}"
                    f"{'/terminating' if p['metadata'].get('deletionTimestamp') else ''}"
                    f"{'/ready' if ready(p) else ''}"
                    for p in pods
                )
            )
            + f"; {len(live)} live"
        )
        if not timeline or not timeline[-1].endswith(state):
            timeline.append(f"{time.monotonic() - applied:5.1f}s {state}")
        for pod in pods:  # a Pod terminating for over 15 s: its events and last log lines
            name = pod["metadata"]["name"]
            if pod["metadata"].get("deletionTimestamp"):
                since = terminating.setdefault(name, time.monotonic())
                if time.monotonic() - since > 15 and name not in dumped:
                    dumped.add(name)
                    events = fleet.kubectl(
                        "get",
                        "events",
                        "--field-selector",
                        f"involvedObject.name={name}",
                        check=False,
                    ).stdout
                    logs = fleet.kubectl("logs", name, "--tail=25", check=False)
                    timeline.append(
                        f"TERMINATING 15s {name}:\n{events}\n{logs.stdout}{logs.stderr}"
                    )
        return pods, live

    def wait(what: str, check: Callable[[], object], timeout: float = 60) -> None:
        try:
            wait_for(what, check, timeout=timeout)
        except AssertionError as exc:  # say what was seen on the way
            raise AssertionError(f"{exc}:\n  " + "\n  ".join(timeline)) from None

    # 1. The rollout: 4 ready Pods of the new template. Pod starts take what the machine gives.
    wait(
        "the growth rollout to 4 ready Pods of the new template",
        lambda: observe() and rolled_out(fleet, "growth", 4),
        timeout=240,
    )
    # 2. The old Pod gone: its idle workers exit at once on SIGTERM; the kubelet waits at most
    #    the grace period (job timeout + margin) before it kills them.
    wait(
        "the old growth Pod gone",
        lambda: all(not p["metadata"].get("deletionTimestamp") for p in observe()[0]),
        timeout=60 + 30 + 30,
    )
    # 3. One live worker per new Pod, and none other.
    names = [p["metadata"]["name"] for p in worker_pods(fleet, "growth")]
    wait(
        "4 live growth workers, one per new Pod",
        lambda: sorted(n.split(".")[1] for n in observe()[1]) == sorted(names),
    )
    print("\ngrowth 1x2 -> 4x1:\n  " + "\n  ".join(timeline))
    short = [probe(conn, settings, "growth", f"scale-short-{n}", hold=3) for n in range(3)]
    long = probe(conn, settings, "growth", "scale-long", hold=25)
    wait_for("4 jobs running", lambda: control.queue_state(conn, "growth").active == 4)
    wait_for(
        "the 3 short jobs finished",
        lambda: all(Job.fetch(j, connection=conn).is_finished for j in short),
        timeout=60,
    )
    busy = Job.fetch(long, connection=conn).worker_name or ""
    busy_pod = next(
        p["metadata"]["name"]
        for p in worker_pods(fleet, "growth")
        if f".{p['metadata']['name']}." in busy
    )
    for queue in body["spec"]["queues"]:
        if queue["name"] == "growth":
            queue["replicas"] = 1
    nodefleet.apply(fleet, body)
    wait_for("1 growth Pod left", lambda: len(worker_pods(fleet, "growth")) == 1, timeout=120)
    [survivor] = worker_pods(fleet, "growth")
    assert survivor["metadata"]["name"] == busy_pod
    wait_for("the long job", lambda: Job.fetch(long, connection=conn).is_finished, timeout=60)
    runs = probe_runs(fleet)
    assert runs["scale-long"] == 1  # not interrupted, not retried
    assert all(runs[f"scale-short-{n}"] == 1 for n in range(3))
    places = ledger(fleet, [*short, long])
    assert set(places.values()) == {"growth:finished"}, places
