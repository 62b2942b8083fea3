"""The operator's failure modes on the real control plane: deletion without the operator, a
pool deleted mid-restart, and an operator SIGKILLed in each restart phase (a chaos fault: the
restart still completes and no probe job is lost or run twice; a row in the chaos table)."""

from __future__ import annotations

import time

import psycopg
import pytest
import redis
from kubernetes import client

from finex_workers import control
from finex_workers.core.settings import Settings
from tests.chaos.ledger import ROWS, Row
from tests.e2e import test_operator as base
from tests.e2e.test_operator import (
    PHASES,
    Operator,
    PhaseRecorder,
    apply,
    get_pool,
    pool,
    probes_done,
    wait_ready,
)
from tests.support.fleet import probe
from tests.support.k8s_fixtures import Kubectl
from tests.support.waiting import wait_for

# The operator's fixtures, shared with test_operator.py.
crd = base.crd
operator = base.operator
secret = base.secret


def _deployments(api: client.ApiClient, namespace: str) -> list[str]:
    items = client.AppsV1Api(api).list_namespaced_deployment(namespace).items
    return [d.metadata.name for d in items]


def test_a_pool_has_no_finalizer_and_deletes_while_the_operator_is_down(
    operator: Operator, secret: str, kubectl: Kubectl, k8s_api: client.ApiClient, k8s_namespace
):
    apply(kubectl, pool())
    body = wait_ready(k8s_api, k8s_namespace)
    assert not body["metadata"].get("finalizers")
    operator.kill()
    started = time.monotonic()
    kubectl("delete", "fwp", "pool", "--wait=true", "--timeout=30s")
    print(f"\ndeleted without an operator in {time.monotonic() - started:.1f}s")
    wait_for(
        "the garbage collector to remove the Deployments",
        lambda: not _deployments(k8s_api, k8s_namespace),
        timeout=60,
    )


def test_the_finalizer_of_an_older_release_is_removed(
    operator: Operator, secret: str, kubectl: Kubectl, k8s_api: client.ApiClient, k8s_namespace
):
    body = pool()
    body["metadata"]["finalizers"] = ["finex.io/operator"]
    apply(kubectl, body)
    wait_for(
        "the operator to drop the old finalizer",
        lambda: not get_pool(k8s_api, k8s_namespace)["metadata"].get("finalizers"),
        timeout=30,
    )
    operator.kill()
    kubectl("delete", "fwp", "pool", "--wait=true", "--timeout=30s")


def _restart_with_jobs_in_flight(
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_conn: redis.Redis,
    fleet_env: dict[str, str],
    start_fleet,
    holds: dict[str, float],
) -> PhaseRecorder:
    """A Ready pool, a fleet on matrix running probe jobs (id -> hold), a restart requested."""
    settings = Settings.from_env(fleet_env)
    apply(kubectl, pool())
    wait_ready(k8s_api, k8s_namespace)
    fleet = start_fleet(["matrix"])
    fleet.wait_ready(redis_conn)
    for probe_id, hold in holds.items():
        probe(redis_conn, settings, "matrix", probe_id, hold=hold)
    wait_for("a job in flight", lambda: control.active_jobs(redis_conn, "matrix"))
    recorder = PhaseRecorder(k8s_api, k8s_namespace)
    kubectl("annotate", "fwp", "pool", "finex.io/restart=matrix@1")
    return recorder


def test_a_pool_deleted_mid_restart_stops_and_resumes_its_queues(
    operator: Operator,
    secret: str,
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_conn: redis.Redis,
    fleet_env: dict[str, str],
    start_fleet,
):
    recorder = _restart_with_jobs_in_flight(
        kubectl, k8s_api, k8s_namespace, redis_conn, fleet_env, start_fleet, {"long": 8}
    )
    recorder.until("Draining")
    assert control.is_paused(redis_conn, "matrix")
    deleted = time.monotonic()
    kubectl("delete", "fwp", "pool", "--wait=true", "--timeout=30s")
    wait_for("the pause to be lifted", lambda: not control.is_paused(redis_conn, "matrix"), 10)
    print(f"\npause lifted {time.monotonic() - deleted:.1f}s after the delete")
    # The operator does nothing more for the pool: no re-pause, no Deployment re-created.
    time.sleep(3)
    assert not control.is_paused(redis_conn, "matrix")
    wait_for("the Deployments to go", lambda: not _deployments(k8s_api, k8s_namespace), 60)
    assert "pool-matrix" not in _deployments(k8s_api, k8s_namespace)


@pytest.mark.parametrize("phase", ["Pausing", "Draining", "Stopping", "Starting", "Resuming"])
def test_operator_sigkill_in_each_restart_phase(
    phase: str,
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
    ids = [f"p{i}" for i in range(4)]
    recorder = _restart_with_jobs_in_flight(
        kubectl, k8s_api, k8s_namespace, redis_conn, fleet_env, start_fleet, dict.fromkeys(ids, 1.5)
    )
    # Kill in the phase, or in the first later one seen (a phase can pass between two polls).
    target = PHASES.index(phase)
    wait_for(
        f"phase {phase} or later",
        lambda: (p := recorder.poll()) is not None and PHASES.index(p) >= target,
        90,
        every=0.02,
    )
    killed_in = recorder.seen[-1]
    operator.kill()
    killed = time.monotonic()
    time.sleep(1)
    operator.start()
    recorder.until("Done", timeout=120)
    done = time.monotonic()
    restart = get_pool(k8s_api, k8s_namespace)["status"]["restart"]
    wait_for("every probe to finish", lambda: len(probes_done(db, ids)) == len(ids), 60)
    runs = probes_done(db, ids)
    dlq = control.list_dlq(redis_conn, "matrix")
    ROWS.append(
        Row(
            f"operator SIGKILL in {phase}",
            len(ids),
            len(ids) - len(runs),
            sum(1 for r in runs.values() if r > 1),
            len(dlq),
            done - killed,
            f"killed in {killed_in}; restart {restart['result']}",
        )
    )
    assert [h["phase"] for h in restart["history"]] == PHASES
    assert restart["result"] == "Succeeded"
    assert set(runs.values()) == {1}
    assert dlq == []
    assert not control.is_paused(redis_conn, "matrix")
