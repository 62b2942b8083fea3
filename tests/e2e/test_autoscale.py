"""Autoscaling on the real control plane: scale-in spares busy Pods, External leaves replicas be.

kwok's Pods run nothing, so each Pod gets a worker process on this host named after it
(FINEX_WORKER_HOST=<pod name>, as the Pod's hostname would be), and the test plays the kubelet:
when a Pod is deleted, its worker gets SIGTERM (a warm shutdown) - after a job was handed to it,
to show that a Pod chosen while idle and busy by the time it stops still commits its job.
"""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg
import redis
from kubernetes import client

from finex_operator.planner import DELETION_COST_ANNOTATION, pod_of_worker
from finex_workers import control
from finex_workers.core.settings import Settings
from finex_workers.infra import rqworkers
from tests.e2e.test_operator import (  # noqa: F401 (fixtures)
    Operator,
    apply,
    crd,
    deployment,
    events,
    get_pool,
    operator,
    pool,
    probes_done,
    secret,
)
from tests.support.fleet import probe
from tests.support.k8s_fixtures import Kubectl
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
GROWTH = {"name": "growth", "concurrency": 1, "maxReplicas": 4}


def live_pods(api: client.ApiClient, namespace: str) -> dict[str, dict[str, str]]:
    """Pods of the growth queue not being deleted, with their annotations."""
    items = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector="finex.io/queue=growth"
    )
    return {
        p.metadata.name: dict(p.metadata.annotations or {})
        for p in items.items
        if p.metadata.deletion_timestamp is None
    }


def ready_replicas(api: client.ApiClient, namespace: str) -> int:
    """Ready replicas of the growth Deployment; 0 while the operator has not created it."""
    found = client.AppsV1Api(api).list_namespaced_deployment(namespace).items
    return sum(d.status.ready_replicas or 0 for d in found if d.metadata.name == "pool-growth")


def busy_pods(conn: redis.Redis) -> dict[str, str]:
    """Pod -> job id of the growth workers running a job now."""
    return {
        str(pod_of_worker(w.name, "growth")): w.current_job
        for w in rqworkers.registered_workers(conn, "growth")
        if w.alive and w.current_job
    }


def test_scale_in_spares_the_busy_pod_and_a_late_job_on_a_victim_commits(
    operator: Operator,  # noqa: F811
    secret: str,  # noqa: F811
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_conn: redis.Redis,
    db: psycopg.Connection,
    fleet_env: dict[str, str],
    start_fleet,
):
    settings = Settings.from_env(fleet_env)
    body = pool(
        queues=[
            {
                **GROWTH,
                "autoscale": {
                    "minReplicas": 1,
                    "jobsPerReplica": 1,
                    "scaleDownStabilizationSeconds": 3600,
                },
            }
        ]
    )
    # Four jobs wait before any worker runs: demand 4 -> 4 Pods.
    short = [f"short-{n}" for n in range(3)]
    for pid in short:
        probe(redis_conn, settings, "growth", pid, hold=2)
    probe(redis_conn, settings, "growth", "long", hold=25)
    apply(kubectl, body)
    wait_for(
        "4 Ready Pods",
        lambda: (
            ready_replicas(k8s_api, k8s_namespace) == 4
            and len(live_pods(k8s_api, k8s_namespace)) == 4
        ),
        60,
    )
    fleets = {
        name: start_fleet(["growth"], FINEX_WORKER_HOST=name)
        for name in live_pods(k8s_api, k8s_namespace)
    }
    wait_for("the three short jobs to finish", lambda: len(probes_done(db, short)) == 3, 60)
    survivor = wait_for(
        "the long job's Pod",
        lambda: next((p for p, j in busy_pods(redis_conn).items() if j.endswith("long")), None),
        30,
    )
    status = wait_for(
        "the autoscaler to hold 4 in its stabilization window",
        lambda: (
            (q := get_pool(k8s_api, k8s_namespace)["status"]["queues"][0])["scaleReason"]
            == "ScaleDownStabilizing"
            and q
        ),
        10,
    )
    assert (status["desiredReplicas"], status["demand"]) == (4, 1)

    # Scale to 1: the operator marks the idle Pods cheapest, then lowers replicas.
    kubectl(
        "patch",
        "fwp",
        "pool",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/queues/0/maxReplicas","value":1},'
        '{"op":"replace","path":"/spec/queues/0/autoscale/scaleDownStabilizationSeconds","value":0}]',
    )
    wait_for("one Pod left", lambda: list(live_pods(k8s_api, k8s_namespace)) == [survivor], 30)
    assert deployment(k8s_api, k8s_namespace, "growth").spec.replicas == 1
    assert live_pods(k8s_api, k8s_namespace)[survivor][DELETION_COST_ANNOTATION] != "0"

    # The victims' workers still run (kwok has no kubelet to stop them). One of them takes a job
    # now, just before its SIGTERM: it must finish it inside the grace period and commit it.
    probe(redis_conn, settings, "growth", "late", hold=2)
    victims = [fleet for name, fleet in fleets.items() if name != survivor]
    wait_for(
        "a victim to take the late job",
        lambda: any(j.endswith("late") for p, j in busy_pods(redis_conn).items() if p != survivor),
        15,
    )
    for fleet in victims:
        fleet.proc.send_signal(signal.SIGTERM)
    for fleet in victims:
        assert fleet.proc.wait(30) == 0, fleet.output()[-2000:]

    ids = [*short, "long", "late"]
    wait_for("every probe to commit", lambda: len(probes_done(db, ids)) == len(ids), 60)
    assert probes_done(db, ids) == dict.fromkeys(ids, 1)  # each ran once: none interrupted
    assert control.list_dlq(redis_conn, "growth") == []
    assert list(live_pods(k8s_api, k8s_namespace)) == [survivor]
    reasons = [r for r, _ in events(k8s_api, k8s_namespace)]
    assert "ScaledUp" in reasons
    assert "ScaledDown" in reasons


def test_external_mode_leaves_replicas_to_the_scaler_and_keeps_deletion_costs(
    operator: Operator,  # noqa: F811
    secret: str,  # noqa: F811
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_conn: redis.Redis,
    fleet_env: dict[str, str],
    start_fleet,
):
    settings = Settings.from_env(fleet_env)
    body = pool(queues=[{**GROWTH, "autoscale": {"mode": "External"}}])
    apply(kubectl, body)
    wait_for("the Deployment", lambda: ready_replicas(k8s_api, k8s_namespace) == 1, 60)
    # An HPA (here: kubectl scale, as the HPA's scale subresource write) sets the replicas ...
    kubectl("scale", "deployment", "pool-growth", "--replicas=3")
    wait_for("3 Ready Pods", lambda: ready_replicas(k8s_api, k8s_namespace) == 3, 60)
    # ... and a spec change that patches the Deployment does not take them back.
    body["spec"]["queues"][0]["concurrency"] = 2
    apply(kubectl, body)
    wait_for(
        "the concurrency to reach the Deployment",
        lambda: any(
            e.value == "2"
            for e in deployment(k8s_api, k8s_namespace, "growth")
            .spec.template.spec.containers[0]
            .env
            if e.name == "GROWTH_WORKER_CONCURRENCY"
        ),
        30,
    )
    # The roll is a Recreate (old Pods gone before new ones start): wait for the new Pods
    # themselves, not only for the Deployment's Ready count, which lags the roll.
    wait_for(
        "3 Ready Pods again",
        lambda: (
            ready_replicas(k8s_api, k8s_namespace) == 3
            and len(live_pods(k8s_api, k8s_namespace)) == 3
        ),
        60,
    )
    assert deployment(k8s_api, k8s_namespace, "growth").spec.replicas == 3
    status = get_pool(k8s_api, k8s_namespace)["status"]["queues"][0]
    assert (status["scaleReason"], status["desiredReplicas"]) == ("ExternalAutoscaler", 3)

    # Deletion costs are still kept: the Pod running a job is the expensive one.
    busy = next(iter(live_pods(k8s_api, k8s_namespace)))
    start_fleet(["growth"], FINEX_WORKER_HOST=busy).wait_ready(redis_conn)
    probe(redis_conn, settings, "growth", "ext", hold=10)
    wait_for(
        "costs: the busy Pod above the idle ones",
        lambda: (
            {
                name: a.get(DELETION_COST_ANNOTATION)
                for name, a in live_pods(k8s_api, k8s_namespace).items()
            }
            == {name: ("6" if name == busy else "0") for name in live_pods(k8s_api, k8s_namespace)}
        ),
        20,
    )


def _yaml_blocks(text: str, kind: str) -> list[str]:
    blocks = text.split("```yaml\n")[1:]
    return [b.split("```", 1)[0] for b in blocks if f"kind: {kind}\n" in b]


def test_docs_scaler_examples_are_accepted(
    crd: None,  # noqa: F811
    k8s_cluster,
    kubectl: Kubectl,
):
    """docs/operator.md's KEDA ScaledObject (with KEDA's published CRD) and HPA, server-side."""
    scaledobjects = k8s_cluster.tools.root / "keda" / "keda.sh_scaledobjects.yaml"
    assert scaledobjects.is_file(), "run hack/build-k8s-tools.sh (KEDA_VERSION) first"
    k8s_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(scaledobjects))
    k8s_cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "-f", str(scaledobjects)
    )
    text = (ROOT / "docs" / "operator.md").read_text()
    for kind in ("ScaledObject", "HorizontalPodAutoscaler"):
        (block,) = _yaml_blocks(text, kind)
        kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=block)
