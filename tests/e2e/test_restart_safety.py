"""A safe restart never leaves queues paused for good (issue 18, items 4 to 6), end to end.

A real kube-apiserver with kwok nodes and the operator as a process: a Pod held Terminating by
a finalizer, Pods that never become Ready (unschedulable: kwok's stand-in for a bad image), a
Pod stuck past its grace, the abort annotation, a queue removed from spec.queues mid-restart,
and a pause the restart did not take.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
import pytest
import redis
from kubernetes import client

from finex_workers import control
from finex_workers.core.settings import Settings
from tests.e2e import test_operator as base
from tests.e2e.test_operator import (
    Operator,
    PhaseRecorder,
    apply,
    condition,
    deployment,
    events,
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

HOLD = "finex.io/test-hold"


def pods(api: client.ApiClient, namespace: str, queue: str) -> list[client.V1Pod]:
    return (
        client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector=f"finex.io/queue={queue}")
        .items
    )


@contextmanager
def held_by_a_finalizer(kubectl: Kubectl, pod: str) -> Iterator[None]:
    """The Pod keeps existing, Terminating, after its deletion until the finalizer goes."""
    patch = {"metadata": {"finalizers": [HOLD]}}
    kubectl("patch", "pod", pod, "--type=merge", "-p", json.dumps(patch))
    try:
        yield
    finally:
        kubectl(
            "patch",
            "pod",
            pod,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )


def took(api: client.ApiClient, namespace: str, start: str, end: str = "Done") -> float:
    """Seconds from entering phase start to entering phase end, from status.restart.history
    (whole seconds: the status's time format)."""
    history = get_pool(api, namespace)["status"]["restart"]["history"]
    at = {h["phase"]: datetime.fromisoformat(h["at"].replace("Z", "+00:00")) for h in history}
    return (at[end] - at[start]).total_seconds()


def degraded(body: dict[str, Any]) -> tuple[str | None, str | None]:
    for c in body.get("status", {}).get("conditions", []):
        if c["type"] == "Degraded":
            return c["status"], c["reason"]
    return None, None


def assert_aborted_and_resumed(
    api: client.ApiClient, namespace: str, conn: redis.Redis, queue: str, phase: str, reason: str
) -> dict[str, Any]:
    body = get_pool(api, namespace)
    restart = body["status"]["restart"]
    assert restart["result"] == "Aborted", restart
    assert restart["abortedIn"] == phase, restart
    assert [h["phase"] for h in restart["history"]][-2:] == ["Resuming", "Done"]
    assert not control.is_paused(conn, queue)
    assert degraded(body) == ("True", "RestartAborted")
    reasons = [r for r, _ in events(api, namespace)]
    assert reason in reasons
    assert "RestartAborted" in reasons
    return restart


@pytest.mark.parametrize("how", ["deadline", "annotation"])
def test_a_pod_held_terminating_does_not_keep_the_queue_paused(
    how: str,
    operator: Operator,
    secret: str,
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_conn: redis.Redis,
):
    stop = 3 if how == "deadline" else 600
    apply(kubectl, pool(stopTimeoutSeconds=stop))
    wait_ready(k8s_api, k8s_namespace)
    (first, *_) = pods(k8s_api, k8s_namespace, "matrix")
    recorder = PhaseRecorder(k8s_api, k8s_namespace)
    with held_by_a_finalizer(kubectl, first.metadata.name):
        kubectl("annotate", "fwp", "pool", "finex.io/restart=matrix@1")
        recorder.until("Stopping")
        assert control.is_paused(redis_conn, "matrix")
        if how == "annotation":
            # Well inside its grace (90 s) and its deadline: only the annotation ends it.
            kubectl("annotate", "fwp", "pool", "finex.io/abort-restart=now")
        recorder.until("Done", timeout=60)
        stopping = took(k8s_api, k8s_namespace, "Stopping")
        print(f"\n{how}: Stopping -> Done (queue resumed) in {stopping:.0f}s")
        reason = "RestartTimedOut" if how == "deadline" else "RestartAbortRequested"
        assert_aborted_and_resumed(k8s_api, k8s_namespace, redis_conn, "matrix", "Stopping", reason)
        # Scaled back up, while the held Pod is still there.
        assert deployment(k8s_api, k8s_namespace, "matrix").spec.replicas == 2
        assert any(
            p.metadata.name == first.metadata.name for p in pods(k8s_api, k8s_namespace, "matrix")
        )
    wait_ready(k8s_api, k8s_namespace)


def test_pods_that_never_become_ready_abort_starting_at_its_deadline(
    operator: Operator,
    secret: str,
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_conn: redis.Redis,
):
    apply(kubectl, pool(startTimeoutSeconds=3))
    wait_ready(k8s_api, k8s_namespace)
    # New Pods can never be scheduled (no kwok node has 1000 CPUs): on kwok the stand-in for an
    # image that cannot be pulled, a crash loop, or no capacity. Old Pods keep running until
    # the restart stops them.
    apply(kubectl, pool(startTimeoutSeconds=3, resources={"requests": {"cpu": "1000"}}))
    recorder = PhaseRecorder(k8s_api, k8s_namespace)
    kubectl("annotate", "fwp", "pool", "finex.io/restart=growth@1")
    recorder.until("Done", timeout=60)
    print(f"\nStarting -> Done (deadline 3 s) in {took(k8s_api, k8s_namespace, 'Starting'):.0f}s")
    restart = assert_aborted_and_resumed(
        k8s_api, k8s_namespace, redis_conn, "growth", "Starting", "RestartTimedOut"
    )
    assert [h["phase"] for h in restart["history"]] == [
        "Pausing", "Draining", "Stopping", "Starting", "Resuming", "Done",
    ]  # fmt: skip
    assert "startTimeoutSeconds=3" in next(
        m for r, m in events(k8s_api, k8s_namespace) if r == "RestartTimedOut"
    )


def test_a_pod_stuck_past_its_grace_does_not_hold_stopping(
    operator: Operator,
    secret: str,
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_conn: redis.Redis,
):
    """A Pod whose grace ended and that is still there (a lost node's, or a finalizer's): the
    restart goes on without it once the slack after its grace has passed."""
    apply(kubectl, pool(stopTimeoutSeconds=300))
    wait_ready(k8s_api, k8s_namespace)
    (first, *_) = pods(k8s_api, k8s_namespace, "growth")
    with held_by_a_finalizer(kubectl, first.metadata.name):
        kubectl("delete", "pod", first.metadata.name, "--grace-period=1", "--wait=false")
        recorder = PhaseRecorder(k8s_api, k8s_namespace)
        kubectl("annotate", "fwp", "pool", "finex.io/restart=growth@1")
        recorder.until("Done", timeout=90)
        stopping = took(k8s_api, k8s_namespace, "Stopping", "Starting")
        print(f"\nStopping with a Pod past its grace lasted {stopping:.0f}s")
        restart = get_pool(k8s_api, k8s_namespace)["status"]["restart"]
        assert restart["result"] == "Succeeded", restart
        assert not control.is_paused(redis_conn, "growth")
        starting = next(m for r, m in events(k8s_api, k8s_namespace) if r == "RestartStarting")
        assert first.metadata.name in starting
        assert "past their grace" in starting


def test_a_queue_removed_mid_restart_is_stopped_deleted_and_resumed(
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
    fleet = start_fleet(["probability"])
    fleet.wait_ready(redis_conn)
    probe(redis_conn, settings, "probability", "slow", hold=5)
    wait_for("a job in flight", lambda: control.active_jobs(redis_conn, "probability"))
    recorder = PhaseRecorder(k8s_api, k8s_namespace)
    kubectl("annotate", "fwp", "pool", "finex.io/restart=probability@1")
    recorder.until("Draining")
    assert control.is_paused(redis_conn, "probability")
    spec = pool()
    spec["spec"]["queues"] = spec["spec"]["queues"][:2]
    apply(kubectl, spec)

    def gone() -> bool:
        names = [
            d.metadata.name
            for d in client.AppsV1Api(k8s_api).list_namespaced_deployment(k8s_namespace).items
        ]
        return "pool-probability" not in names

    removed = time.monotonic()
    wait_for("the removed queue's Deployment to be deleted", gone, timeout=60)
    print(f"\nremoved queue's Deployment deleted {time.monotonic() - removed:.1f}s after the apply")
    assert not control.is_paused(redis_conn, "probability")
    reasons = [r for r, _ in events(k8s_api, k8s_namespace)]
    assert "QueueRemoved" in reasons
    assert "DeploymentDeleted" in reasons
    recorder.until("Done", timeout=60)
    # The job in flight (its worker runs on this host) still commits, once.
    wait_for("the slow job to commit", lambda: probes_done(db, ["slow"]) == {"slow": 1}, 30)


def test_the_operator_restart_keeps_a_pause_it_did_not_take(
    operator: Operator,
    secret: str,
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_conn: redis.Redis,
):
    apply(kubectl, pool())
    wait_ready(k8s_api, k8s_namespace)
    control.pause(redis_conn, "growth", by=control.Holder.CLI)
    recorder = PhaseRecorder(k8s_api, k8s_namespace)
    kubectl("annotate", "fwp", "pool", "finex.io/restart=2026")
    recorder.until("Done", timeout=60)
    restart = get_pool(k8s_api, k8s_namespace)["status"]["restart"]
    assert restart["result"] == "Succeeded"
    assert "still paused by others: growth by cli" in restart["message"]
    assert set(control.holds(redis_conn, "growth")) == {"cli"}
    assert not control.is_paused(redis_conn, "matrix")
    assert not control.is_paused(redis_conn, "probability")
    assert condition(get_pool(k8s_api, k8s_namespace), "Degraded") == "False"


def test_forget_waits_for_the_pools_reconcile_in_flight(
    secret: str, k8s_api: client.ApiClient, k8s_namespace: str, redis_conn: redis.Redis
) -> None:
    """A pool deleted while a reconcile of it runs: forget() lifts the restart's pause only once
    that reconcile is done, or the reconcile's own pause (Pausing acts after forget lifted)
    would stay for good. Here the reconcile in flight is the pool's lock held."""
    import threading

    from finex_operator.reconcile import Runtime, forget
    from finex_operator.settings import OperatorSettings

    rt = Runtime(api=k8s_api, settings=OperatorSettings(), post=lambda *a, **k: None)
    body = pool()
    body["metadata"].update(namespace=k8s_namespace, uid="deleted-pool-uid")
    body["status"] = {"restart": {"phase": "Pausing", "queues": ["growth"]}}
    lock = rt.lock_for("deleted-pool-uid")
    lock.acquire()  # a reconcile of the pool is in flight
    forgetting = threading.Thread(target=forget, args=(rt, body), daemon=True)
    forgetting.start()
    # ... and takes the restart's pause now, after forget() began.
    control.pause(redis_conn, "growth", by=control.Holder.OPERATOR_RESTART)
    forgetting.join(timeout=1.0)
    assert forgetting.is_alive(), "forget() did not wait for the reconcile in flight"
    lock.release()
    forgetting.join(timeout=30)
    assert not forgetting.is_alive()
    assert control.holds(redis_conn, "growth") == {}, "the restart's pause outlived its pool"
