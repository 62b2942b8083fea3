"""The operator on the real control plane, with real Redis, PostgreSQL and worker processes.

The operator runs as a subprocess (`python -m finex_operator --standalone --namespace <ns>`), so
"kill the operator" is a real SIGKILL. kwok's Pods run nothing, so the jobs in flight are run by
worker processes on this host against the same Redis (start_fleet).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from kubernetes import client
from rq.registry import StartedJobRegistry

from finex_workers import control
from finex_workers.core.settings import Settings
from finex_workers.infra.redisconn import get_queue
from finex_workers.runtime import enqueue
from tests.support import cluster as k8s
from tests.support.fleet import probe
from tests.support.k8s_fixtures import Kubectl, wait_established
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "finexworkerpools.yaml"
QUEUES = ("matrix", "growth", "probability")
PHASES = ["Pausing", "Draining", "Stopping", "Starting", "Resuming", "Done"]


@pytest.fixture(scope="session")
def crd(k8s_cluster: k8s.Cluster) -> None:
    k8s_cluster.kubectl("apply", "-f", str(CRD))
    wait_established(k8s_cluster, CRD)


class Operator:
    """`python -m finex_operator` as a subprocess watching one namespace; kill() is SIGKILL."""

    def __init__(self, cluster: k8s.Cluster, namespace: str, log_dir: Path) -> None:
        self.cluster, self.namespace, self.log_dir = cluster, namespace, log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = {
            **self.cluster.env(),
            "PYTHONPATH": f"{ROOT}/operator{os.pathsep}{ROOT}/workers{os.pathsep}{ROOT}",
            "FINEX_OPERATOR_SWEEP_SECONDS": "1",
        }
        log = (self.log_dir / f"operator-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "finex_operator", "--standalone", "--namespace", self.namespace],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.log_dir.glob("operator-*.log")))


@pytest.fixture
def operator(
    crd: None, k8s_cluster: k8s.Cluster, k8s_namespace: str, tmp_path: Path
) -> Iterator[Operator]:
    op = Operator(k8s_cluster, k8s_namespace, tmp_path)
    op.start()
    yield op
    op.stop()
    print(op.logs()[-4000:])


@pytest.fixture
def secret(kubectl: Kubectl, redis_url: str, database_url: str) -> str:
    kubectl(
        "create",
        "secret",
        "generic",
        "finex-urls",
        f"--from-literal=redis-url={redis_url}",
        f"--from-literal=database-url={database_url}",
    )
    return "finex-urls"


def pool(name: str = "pool", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "image": "registry.invalid/finex-workers:1",
        "queues": [
            {"name": "matrix", "replicas": 2, "concurrency": 5},
            {"name": "growth", "replicas": 1, "concurrency": 10},
            {"name": "probability", "replicas": 1, "concurrency": 10},
        ],
        "redis": {"urlSecretRef": {"name": "finex-urls", "key": "redis-url"}},
        "database": {
            "urlSecretRef": {"name": "finex-urls", "key": "database-url"},
            "connectionBudget": 40,
        },
        "jobTimeoutSeconds": 60,
        "drainTimeoutSeconds": 60,
    }
    body.update(spec)
    return {
        "apiVersion": "finex.io/v1alpha1",
        "kind": "FinexWorkerPool",
        "metadata": {"name": name},
        "spec": body,
    }


def apply(kubectl: Kubectl, body: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", *extra, "-f", "-", input=json.dumps(body), check=not extra)


def get_pool(api: client.ApiClient, namespace: str, name: str = "pool") -> dict[str, Any]:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(
        "finex.io", "v1alpha1", namespace, "finexworkerpools", name
    )


def condition(body: dict[str, Any], kind: str) -> str | None:
    for c in body.get("status", {}).get("conditions", []):
        if c["type"] == kind:
            return str(c["status"])
    return None


def deployment(api: client.ApiClient, namespace: str, queue: str) -> client.V1Deployment:
    return client.AppsV1Api(api).read_namespaced_deployment(f"pool-{queue}", namespace)


def wait_ready(api: client.ApiClient, namespace: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(
        "the pool to be Ready",
        lambda: (b := get_pool(api, namespace)) and condition(b, "Ready") == "True" and b,
        timeout,
    )


def events(api: client.ApiClient, namespace: str) -> list[tuple[str, str]]:
    items = client.CoreV1Api(api).list_namespaced_event(namespace).items
    return [(e.reason, e.message) for e in items if e.involved_object.kind == "FinexWorkerPool"]


# -- the CRD rejects bad specs ----------------------------------------------------------------


def _without(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = spec
        for part in parents:
            node = node[part]
        del node[last]

    return edit


BAD_SPECS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "connections over budget",
        lambda s: s["database"].update(connectionBudget=29),
        "total PostgreSQL connections 30 exceed spec.database.connectionBudget 29",
    ),
    (
        "autoscale maximum counted in the budget",
        lambda s: s["queues"][2].update(maxReplicas=3),
        "total PostgreSQL connections 50 exceed spec.database.connectionBudget 40",
    ),
    (
        "maxReplicas below replicas",
        lambda s: s["queues"][0].update(maxReplicas=1),
        "maxReplicas (1) must be at least replicas (2)",
    ),
    (
        "unknown queue name",
        lambda s: s["queues"][1].update(name="billing"),
        'Unsupported value: "billing"',
    ),
    ("duplicate queue", lambda s: s["queues"][1].update(name="matrix"), "Duplicate value"),
    (
        "concurrency 0",
        lambda s: s["queues"][0].update(concurrency=0),
        "should be greater than or equal to 1",
    ),
    (
        "concurrency above 64",
        lambda s: s["queues"][0].update(concurrency=65),
        "should be less than or equal to 64",
    ),
    (
        "inline redis password",
        lambda s: s["redis"].update(password="hunter2"),
        'unknown field "spec.redis.password"',
    ),
    (
        "inline database url",
        lambda s: s["database"].update(url="postgresql://u:p@db/finex"),
        'unknown field "spec.database.url"',
    ),
    ("no secret reference", _without("redis.urlSecretRef"), "spec.redis.urlSecretRef: Required"),
    (
        "bad drain policy",
        lambda s: s.update(onDrainTimeout="Ignore"),
        'Unsupported value: "Ignore"',
    ),
    ("no queues", lambda s: s.update(queues=[]), "should have at least 1 items"),
    (
        "restart stop deadline 0",
        lambda s: s.update(stopTimeoutSeconds=0),
        "should be greater than or equal to 1",
    ),
    (
        "restart start deadline above a day",
        lambda s: s.update(startTimeoutSeconds=86401),
        "should be less than or equal to 86400",
    ),
    (
        "DLQ retries above 100",
        lambda s: s.update(dlq={"maxRetries": 101}),
        "should be less than or equal to 100",
    ),
]


@pytest.mark.parametrize(
    ("edit", "message"), [b[1:] for b in BAD_SPECS], ids=[b[0] for b in BAD_SPECS]
)
def test_bad_spec_is_rejected_by_the_apiserver(
    crd: None, kubectl: Kubectl, edit: Callable[[dict[str, Any]], None], message: str
):
    body = pool()
    edit(body["spec"])
    result = apply(kubectl, body, "--dry-run=server", "--validate=strict")
    print(result.stderr)
    assert result.returncode != 0
    assert message in result.stderr


def test_good_spec_is_accepted_and_shows_printer_columns(crd: None, kubectl: Kubectl):
    apply(kubectl, pool())
    header = kubectl("get", "fwp").stdout.splitlines()[0].split()
    assert header == [
        "NAME",
        "READY",
        "RESTART",
        "REPLICAS",
        "DESIRED",
        "WAITING",
        "ACTIVE",
        "DLQ",
        "AGE",
    ]


# -- Deployments ------------------------------------------------------------------------------


def test_pool_creates_ready_deployments_and_concurrency_changes_reach_them(
    operator: Operator,
    secret: str,
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_conn: redis.Redis,
):
    apply(kubectl, pool())
    body = wait_ready(k8s_api, k8s_namespace)
    assert [q["name"] for q in body["status"]["queues"]] == list(QUEUES)
    assert "kopf" not in json.dumps(body["status"])
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    for q, replicas in zip(QUEUES, (2, 1, 1), strict=True):
        dep = deployment(k8s_api, k8s_namespace, q)
        assert dep.status.ready_replicas == replicas
        assert dep.metadata.owner_references[0].uid == body["metadata"]["uid"]
        assert dep.spec.selector.match_labels == {"finex.io/pool": "pool", "finex.io/queue": q}
        for labels in (dep.metadata.labels, dep.spec.template.metadata.labels):
            assert labels["app.kubernetes.io/instance"] == "pool"
            assert labels["app.kubernetes.io/managed-by"] == "finex-operator"
            assert labels["app.kubernetes.io/part-of"] == "finex-workers"
        (container,) = dep.spec.template.spec.containers
        assert container.command[:5] == ["finex", "workers", "start", "--worker", q]
        env = {e.name: e for e in container.env}
        assert env["REDIS_URL"].value_from.secret_key_ref.name == "finex-urls"
        assert env["DATABASE_URL"].value_from.secret_key_ref.key == "database-url"

    changed = pool()
    changed["spec"]["queues"][1] = {"name": "growth", "replicas": 3, "concurrency": 4}
    started = time.monotonic()
    apply(kubectl, changed)
    kubectl_seconds = time.monotonic() - started

    def updated() -> bool:
        dep = deployment(k8s_api, k8s_namespace, "growth")
        env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env}
        return dep.spec.replicas == 3 and env["GROWTH_WORKER_CONCURRENCY"] == "4"

    # A liveness bound only: the latency is measured by bench/operator_latency.py.
    wait_for("the growth Deployment to follow the spec", updated, timeout=30, every=0.02)
    latency = time.monotonic() - started
    print(
        f"\napply-to-Deployment latency: {latency:.2f}s"
        f" (kubectl apply itself {kubectl_seconds:.2f}s)"
    )
    wait_for(
        "the pool to report 3 ready growth Pods",
        lambda: (
            (b := get_pool(k8s_api, k8s_namespace))
            and condition(b, "Ready") == "True"
            and b["status"]["queues"][1]["readyReplicas"] == 3
        ),
    )
    # Nothing was paused, nothing restarted: the operator did not touch the queues.
    assert not any(control.is_paused(redis_conn, q) for q in QUEUES)


def test_deleting_the_pool_removes_its_deployments(
    operator: Operator, secret: str, kubectl: Kubectl, k8s_api: client.ApiClient, k8s_namespace
):
    apply(kubectl, pool())
    wait_ready(k8s_api, k8s_namespace)
    kubectl("delete", "fwp", "pool", "--wait=true", "--timeout=60s")
    wait_for(
        "the garbage collector to remove the Deployments",
        lambda: not client.AppsV1Api(k8s_api).list_namespaced_deployment(k8s_namespace).items,
        timeout=60,
    )


# -- safe restart -----------------------------------------------------------------------------


def probes_done(db: psycopg.Connection, ids: list[str]) -> dict[str, int]:
    rows = db.execute(
        "SELECT probe_id, runs FROM finex_probes WHERE finished_at IS NOT NULL"
    ).fetchall()
    return {p: r for p, r in rows if p in ids}


class PhaseRecorder:
    """Polls status.restart.phase and keeps the distinct sequence seen."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.namespace, self.seen = api, namespace, []  # type: list[str]
        self.timeline: list[tuple[float, str]] = []

    def poll(self) -> str | None:
        phase = get_pool(self.api, self.namespace).get("status", {}).get("restart", {}).get("phase")
        if phase and (not self.seen or self.seen[-1] != phase):
            self.seen.append(phase)
            self.timeline.append((time.monotonic(), phase))
        return phase

    def until(self, phase: str, timeout: float = 90) -> None:
        wait_for(f"restart phase {phase}", lambda: self.poll() == phase, timeout, every=0.05)


def test_restart_with_jobs_in_flight_walks_the_phases_and_loses_no_job(
    operator: Operator,
    secret: str,
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_conn: redis.Redis,
    db: psycopg.Connection,
    fleet_env: dict[str, str],
    start_fleet,
):
    settings = Settings.from_env(fleet_env)
    apply(kubectl, pool())
    wait_ready(k8s_api, k8s_namespace)
    fleet = start_fleet(list(QUEUES))
    fleet.wait_ready(redis_conn)
    ids = []
    for q in QUEUES:
        for n in range(2):  # concurrency 1: one runs, one waits
            ids.append(f"{q}-{n}")
            probe(redis_conn, settings, q, ids[-1], hold=3)
    wait_for("jobs in flight", lambda: sum(control.active_jobs(redis_conn, q) for q in QUEUES))

    recorder = PhaseRecorder(k8s_api, k8s_namespace)
    kubectl("annotate", "fwp", "pool", "finex.io/restart=first")
    recorder.until("Draining")
    # A second request during the restart is queued, not overlapped.
    kubectl("annotate", "--overwrite", "fwp", "pool", "finex.io/restart=second")
    for q in QUEUES:  # enqueues still land while the queues are paused
        ids.append(f"{q}-late")
        probe(redis_conn, settings, q, ids[-1], hold=0)
    recorder.until("Done")
    body = get_pool(k8s_api, k8s_namespace)
    restart = body["status"]["restart"]
    assert restart["requestedValue"] == "first"
    assert restart["result"] == "Succeeded"
    first_history = [h["phase"] for h in restart["history"]]
    assert first_history == PHASES
    assert [p for p in PHASES if p in recorder.seen] == recorder.seen[: len(recorder.seen)]
    drain = [t for t, p in recorder.timeline if p in ("Draining", "Stopping")]
    total = recorder.timeline[-1][0] - recorder.timeline[0][0]
    print(f"\nphases seen: {recorder.seen}; drain {drain[1] - drain[0]:.1f}s of {total:.1f}s")
    print(f"restart overhead beyond the drain: {total - (drain[1] - drain[0]):.1f}s")

    # The queued request runs next, on its own.
    wait_for(
        "the queued restart to finish",
        lambda: (
            (r := get_pool(k8s_api, k8s_namespace)["status"]["restart"])["requestedValue"]
            == "second"
            and r["phase"] == "Done"
        ),
        timeout=90,
    )
    wait_for("every probe to finish", lambda: len(probes_done(db, ids)) == len(ids), 60)
    assert set(probes_done(db, ids).values()) == {1}  # each ran exactly once
    assert not any(control.is_paused(redis_conn, q) for q in QUEUES)
    assert all(control.list_dlq(redis_conn, q) == [] for q in QUEUES)
    reasons = [r for r, _ in events(k8s_api, k8s_namespace)]
    for reason in ("RestartStarted", "RestartQueued", "RestartStopping", "RestartSucceeded"):
        assert reason in reasons


def test_killing_the_operator_mid_drain_still_completes_the_restart(
    operator: Operator,
    secret: str,
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_conn: redis.Redis,
    db: psycopg.Connection,
    fleet_env: dict[str, str],
    start_fleet,
):
    settings = Settings.from_env(fleet_env)
    apply(kubectl, pool())
    wait_ready(k8s_api, k8s_namespace)
    fleet = start_fleet(["matrix"])
    fleet.wait_ready(redis_conn)
    probe(redis_conn, settings, "matrix", "long", hold=6)
    wait_for("a job in flight", lambda: control.active_jobs(redis_conn, "matrix"))

    recorder = PhaseRecorder(k8s_api, k8s_namespace)
    kubectl("annotate", "fwp", "pool", "finex.io/restart=matrix@1")
    recorder.until("Draining")
    operator.kill()
    assert control.is_paused(redis_conn, "matrix")  # the drain goes on without an operator
    time.sleep(1)
    operator.start()
    recorder.until("Done")
    restart = get_pool(k8s_api, k8s_namespace)["status"]["restart"]
    assert [h["phase"] for h in restart["history"]] == PHASES
    assert restart["queues"] == ["matrix"]
    assert restart["result"] == "Succeeded"
    assert not control.is_paused(redis_conn, "matrix")
    wait_for("the probe to finish", lambda: probes_done(db, ["long"]) == {"long": 1})


@pytest.mark.parametrize(
    ("policy", "history", "result"),
    [
        # Abort: resume the queues and leave the Deployment alone (never scaled down).
        ("Abort", ["Pausing", "Draining", "Resuming", "Done"], "Aborted"),
        # Proceed: restart anyway; the Pods get a warm shutdown.
        ("Proceed", PHASES, "Succeeded"),
    ],
)
def test_drain_timeout_follows_its_policy_and_the_running_job_still_commits(
    policy: str,
    history: list[str],
    result: str,
    operator: Operator,
    secret: str,
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_conn: redis.Redis,
    db: psycopg.Connection,
    fleet_env: dict[str, str],
    start_fleet,
):
    settings = Settings.from_env(fleet_env)
    apply(kubectl, pool(drainTimeoutSeconds=2, onDrainTimeout=policy))
    wait_ready(k8s_api, k8s_namespace)
    fleet = start_fleet(["growth"])
    fleet.wait_ready(redis_conn)
    probe(redis_conn, settings, "growth", "slow", hold=8)
    wait_for("a job in flight", lambda: control.active_jobs(redis_conn, "growth"))
    recorder = PhaseRecorder(k8s_api, k8s_namespace)
    kubectl("annotate", "fwp", "pool", "finex.io/restart=growth@1")
    recorder.until("Done", timeout=60)
    restart = get_pool(k8s_api, k8s_namespace)["status"]["restart"]
    assert [h["phase"] for h in restart["history"]] == history
    assert restart["result"] == result
    assert "DrainTimedOut" in [r for r, _ in events(k8s_api, k8s_namespace)]
    assert not control.is_paused(redis_conn, "growth")
    assert deployment(k8s_api, k8s_namespace, "growth").spec.replicas == 1
    # Either way the job in flight is not cut off: its worker (on the host) commits it.
    wait_for("the slow job to commit", lambda: probes_done(db, ["slow"]) == {"slow": 1}, 30)


# -- DLQ policy and stuck jobs ----------------------------------------------------------------


def test_dlq_jobs_are_retried_with_backoff_then_parked_and_retry_annotation_forces_one(
    operator: Operator,
    secret: str,
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_conn: redis.Redis,
    fleet_env: dict[str, str],
    start_fleet,
):
    settings = Settings.from_env({**fleet_env, "FINEX_RETRY_MAX": "0"})
    dlq = {"autoRetry": True, "maxRetries": 2, "backoffSeconds": 1, "maxBackoffSeconds": 2}
    apply(kubectl, pool(dlq=dlq))
    wait_ready(k8s_api, k8s_namespace)
    fleet = start_fleet(["growth"], FINEX_RETRY_MAX="0")
    fleet.wait_ready(redis_conn)
    job_id = enqueue.enqueue_unique(
        get_queue("growth", redis_conn),
        "tests.support.testjobs.always_fails",
        {"reason": "disk on fire"},
        "doomed",
        settings,
    ).job_id

    def parked() -> bool:
        growth = next(
            q for q in get_pool(k8s_api, k8s_namespace)["status"]["queues"] if q["name"] == "growth"
        )
        return growth.get("parked") == 1 and growth.get("failed") == 1

    wait_for("the job to be parked after 2 DLQ retries", parked, timeout=60)
    (dead,) = control.list_dlq(redis_conn, "growth")
    assert dead.id == job_id
    assert dead.dlq_retries == 2
    assert "disk on fire" in dead.error
    time.sleep(3)  # parked: no further automatic retry
    assert control.list_dlq(redis_conn, "growth")[0].dlq_retries == 2
    body = get_pool(k8s_api, k8s_namespace)
    assert condition(body, "Degraded") == "True"
    assert body["status"]["totals"]["dlq"] == 1

    kubectl("annotate", "fwp", "pool", "finex.io/retry-dlq=growth@1")
    wait_for(
        "the forced retry",
        lambda: (d := control.list_dlq(redis_conn, "growth")) and d[0].dlq_retries == 3,
        timeout=30,
    )
    # Events are posted after the actions (act, then report): wait for them, don't race them.
    wanted = {"DLQAutoRetry", "DLQRetried", "DLQJobsParked", "DLQRetryRequested"}
    wait_for(
        f"the Events {sorted(wanted)}",
        lambda: wanted <= {r for r, _ in events(k8s_api, k8s_namespace)},
        timeout=10,
    )


def test_stuck_jobs_are_swept_even_for_a_queue_scaled_to_zero(
    operator: Operator,
    secret: str,
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_conn: redis.Redis,
    fleet_env: dict[str, str],
    start_fleet,
):
    settings = Settings.from_env(fleet_env)
    body = pool()
    body["spec"]["queues"][2]["replicas"] = 0
    apply(kubectl, body)
    wait_ready(k8s_api, k8s_namespace)
    fleet = start_fleet(["probability"])
    fleet.wait_ready(redis_conn)
    job_id = probe(redis_conn, settings, "probability", "orphan", hold=30)
    wait_for("a job in flight", lambda: control.active_jobs(redis_conn, "probability"))
    fleet.kill()  # the worker dies mid-job; no worker is left
    try:
        wait_for(
            "the operator to requeue the abandoned job",
            lambda: (
                redis_conn.lindex(get_queue("probability", redis_conn).key, 0) == job_id.encode()
            ),
            timeout=30,
        )
    except AssertionError:
        print(sweep_diagnostics(redis_conn, "probability"))
        print(get_pool(k8s_api, k8s_namespace).get("status"))
        print(operator.logs()[-8000:])
        raise
    # The Event is posted just after the requeue (act, then report): wait for it, don't race it.
    wait_for(
        "the StuckJobsRecovered Event",
        lambda: "StuckJobsRecovered" in [r for r, _ in events(k8s_api, k8s_namespace)],
        timeout=10,
    )


def sweep_diagnostics(conn: redis.Redis, queue: str) -> str:
    """What a sweep would see, for a failure message; reads only, so the state stays as found."""
    lines = [f"now={time.time():.1f} queue={conn.lrange(get_queue(queue, conn).key, 0, -1)}"]
    for entry, score in conn.zrange(StartedJobRegistry(queue, conn).key, 0, -1, withscores=True):
        job_id, _, execution = entry.decode().partition(":")
        worker = conn.hget(f"rq:execution:{job_id}:{execution}", "worker_name") or b""
        data = conn.hgetall(f"rq:worker:{worker.decode()}")
        pid = int(data.get(b"pid") or 0)
        state = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}").exists() else "gone"
        lines.append(f"started {entry!r} score={score:.1f} worker={worker!r} {data} pid {state}")
    for key in conn.keys("rq:job:*"):
        job = conn.hgetall(key)
        lines.append(f"{key!r}: status={job.get(b'status')!r} worker={job.get(b'worker_name')!r}")
    for worker_key in conn.smembers("rq:workers"):
        lines.append(f"registered {worker_key!r}: {conn.hgetall(worker_key)}")
    intermediate = get_queue(queue, conn).intermediate_queue_key
    lines.append(f"intermediate list: {conn.lrange(intermediate, 0, -1)}")
    return "\n".join(lines)
