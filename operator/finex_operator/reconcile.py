"""One reconcile of one pool: observe, plan (pure), act, report.

Every trigger (create, update, resume, and the timer) calls reconcile(). A per-pool lock keeps
two triggers from acting at once. Queue operations go through finex_workers.control, the one
implementation of each runbook step that the CLI uses too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from finex_operator import cluster, urlerrors
from finex_operator.planner import (
    PHASES,
    DlqEntry,
    Event,
    Observed,
    Plan,
    PodLoad,
    plan,
    pod_loads,
)
from finex_operator.reasons import EventReason
from finex_operator.settings import OperatorSettings
from finex_operator.spec import PoolSpec, parse_spec
from finex_workers import control
from finex_workers.core.names import QUEUE_NAMES
from finex_workers.infra import rqworkers
from finex_workers.infra.redisconn import redis_from_url

log = logging.getLogger("finex.operator")

#: Posts an Event on the pool: (body, type, reason, message). kopf.event in production.
Poster = Callable[[dict[str, Any], str, str, str], None]


@dataclass
class Runtime:
    """Per-process state: the API client, Redis clients by URL, locks and sweep clocks."""

    api: client.ApiClient
    settings: OperatorSettings
    post: Poster
    redis_clients: dict[str, redis.Redis] = field(default_factory=dict)
    locks: dict[str, threading.Lock] = field(default_factory=dict)
    last_sweep: dict[str, float] = field(default_factory=dict)
    #: The last Warning about each Deployment the operator could not apply, by (pool uid,
    #: Deployment name): posted once, not on every tick, until it changes or goes away.
    apply_warnings: dict[tuple[str, str], str] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def lock_for(self, key: str) -> threading.Lock:
        with self.guard:
            return self.locks.setdefault(key, threading.Lock())

    def redis_for(self, url: str) -> redis.Redis:
        with self.guard:
            if url not in self.redis_clients:
                self.redis_clients[url] = redis_from_url(url)
            return self.redis_clients[url]


def _observe_load(conn: redis.Redis, spec: PoolSpec) -> dict[str, PodLoad]:
    """What each Pod's live workers run now (workers are named after their Pod)."""
    out: dict[str, PodLoad] = {}
    for q in spec.queue_names:
        live = [w for w in rqworkers.registered_workers(conn, q) if w.alive]
        out.update(pod_loads(((w.name, w.current_job or "", w.job_age_seconds) for w in live), q))
    return out


def _observe_redis(
    rt: Runtime, conn: redis.Redis, spec: PoolSpec, removed: Sequence[str]
) -> tuple[dict[str, control.QueueState], dict[str, list[DlqEntry]]]:
    """The pool's queues, and those of removed queues whose Deployment is still there (their
    pauses are lifted before the Deployment goes)."""
    states = {q: control.queue_state(conn, q) for q in [*spec.queue_names, *removed]}
    dlq = {
        q: [
            DlqEntry(j.id, j.dlq_retries, j.failed_at, j.quarantined)
            for j in control.dlq_summaries(conn, q, limit=rt.settings.dlq_scan_limit)
        ]
        for q in spec.queue_names
        if states[q].failed
    }
    return states, dlq


def observe(rt: Runtime, body: dict[str, Any]) -> tuple[Observed, redis.Redis | None]:
    """A snapshot of the pool's world; Redis problems are reported, not raised."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec = parse_spec(body["spec"])
    deployments = cluster.deployments(rt.api, namespace, name)
    removed = sorted(q for q in deployments if q not in spec.queue_names and q in QUEUE_NAMES)
    conn: redis.Redis | None = None
    states: dict[str, control.QueueState] | None = None
    dlq: dict[str, list[DlqEntry]] = {}
    load: dict[str, PodLoad] | None = None
    error = ""
    try:
        url = cluster.secret_value(rt.api, namespace, spec.redis_url.name, spec.redis_url.key)
        conn = rt.redis_for(url)
        states, dlq = _observe_redis(rt, conn, spec, removed)
        load = _observe_load(conn, spec)
    except cluster.SecretError as exc:  # names the Secret and key, never their value
        error, conn = f"{type(exc).__name__}: {exc}", None
    except (redis.RedisError, ValueError) as exc:
        # Its text may quote the URL (a password's first half): status, Events and the log
        # get the kind of failure only.
        ref = spec.redis_url
        source = f"the Redis URL in Secret {namespace}/{ref.name}, key {ref.key}"
        error, conn = urlerrors.describe(exc, source), None
    pods = cluster.pods(rt.api, namespace, name)
    key = meta["uid"]
    sweep_due = time.monotonic() - rt.last_sweep.get(key, 0.0) >= rt.settings.sweep_seconds
    observed = Observed(
        name=name,
        uid=meta["uid"],
        generation=int(meta.get("generation") or 0),
        spec=spec,
        now=datetime.now(UTC).replace(microsecond=0),
        status=body.get("status") or {},
        annotations=meta.get("annotations") or {},
        deployments=deployments,
        pods=cluster.pod_counts(pods),
        pod_views=pods,
        pod_load=load,
        queues=states,
        redis_error=error,
        dlq=dlq,
        sweep_due=sweep_due,
        grace_margin=rt.settings.grace_margin_seconds,
    )
    return observed, conn


def act(rt: Runtime, body: dict[str, Any], todo: Plan, conn: redis.Redis | None) -> list[Event]:
    """Carry out the plan; returns Events about results only known afterwards (sweeps)."""
    after = _act_on_deployments(rt, body, todo)
    if conn is None:
        return after
    for q, holder in todo.pause:
        control.pause(conn, q, by=holder)
    for q, holder in todo.resume:
        control.release(conn, q, by=holder)
    for q, ids in todo.retry_dlq.items():
        sent = control.retry_dlq(conn, q, ids)
        after.append(Event("Normal", EventReason.DLQ_RETRIED, f"{q}: sent {len(sent)} job(s) back"))
    if todo.sweep:
        rt.last_sweep[body["metadata"]["uid"]] = time.monotonic()
    max_crashes = parse_spec(body["spec"]).max_crashes if todo.sweep else 0
    for q in todo.sweep:
        report = control.clean_stuck_jobs(conn, q, max_crashes=max_crashes)
        if report.requeued or report.dead_lettered:
            reasons = "; ".join(f"{j}: {r}" for j, r in list(report.reasons.items())[:5])
            after.append(
                Event(
                    "Warning",
                    EventReason.STUCK_JOBS_RECOVERED,
                    f"{q}: requeued {len(report.requeued)}, dead-lettered "
                    f"{len(report.dead_lettered)} ({reasons})",
                )
            )
        if report.quarantined:
            after.append(
                Event(
                    "Warning",
                    EventReason.JOBS_QUARANTINED,
                    f"{q}: quarantined after {max_crashes} crashes: "
                    + ", ".join(report.quarantined[:5]),
                )
            )
    return after


def _act_on_deployments(rt: Runtime, body: dict[str, Any], todo: Plan) -> list[Event]:
    """Deletion costs, then Deployments applied, scaled and deleted; Events about what failed."""
    namespace = body["metadata"]["namespace"]
    # Costs first: a scale-in in todo.apply must find its victims already marked.
    for pod, cost in todo.pod_costs.items():
        cluster.set_deletion_cost(rt.api, namespace, pod, cost)
    after: list[Event] = []
    not_applied = set()
    for dep in todo.apply:
        applied, warning = _apply(rt, body, dep)
        after += [warning] if warning is not None else []
        if not applied:
            not_applied.add(dep["metadata"]["name"])
    # The planner announced each Deployment it applies; drop the announcement of one that was
    # not (foreign, refused, or changed meanwhile), or it would repeat on every round.
    todo.events[:] = [
        e for e in todo.events
        if not (e.reason == EventReason.DEPLOYMENT_APPLIED
                and e.message.split(":", 1)[0] in not_applied)
    ]  # fmt: skip
    for name, replicas in todo.scale.items():
        cluster.scale_deployment(rt.api, namespace, name, replicas)
    for name in todo.delete:
        cluster.delete_deployment(rt.api, namespace, name)
    return after


def _apply(rt: Runtime, pool: dict[str, Any], dep: dict[str, Any]) -> tuple[bool, Event | None]:
    """Apply one Deployment: whether it was, and a Warning Event (once per message) when it is
    not the pool's or the apiserver refused it."""
    key = (pool["metadata"]["uid"], dep["metadata"]["name"])
    try:
        cluster.apply_deployment(rt.api, pool["metadata"]["namespace"], dep)
    except cluster.ForeignDeploymentError as exc:
        warning = Event("Warning", EventReason.DEPLOYMENT_NOT_OWNED, str(exc))
    except ApiException as exc:
        if exc.status == 409:  # changed since it was read (an HPA's scale): the next round
            return False, None
        if exc.status != 422:
            raise
        warning = Event("Warning", EventReason.DEPLOYMENT_REFUSED, cluster.refusal(exc, dep))
    else:
        rt.apply_warnings.pop(key, None)
        return True, None
    if rt.apply_warnings.get(key) == warning.message:
        return False, None
    rt.apply_warnings[key] = warning.message
    return False, warning


def report(rt: Runtime, body: dict[str, Any], todo: Plan, events: list[Event]) -> bool:
    """Post the Events, and patch status only if it changed. False if the patch lost a race."""
    for event in [*todo.events, *events]:
        rt.post(body, event.type, event.reason, event.message)
    meta = body["metadata"]
    old = body.get("status") or {}
    if _pruned({k: old.get(k) for k in todo.status}) == _pruned(todo.status):
        return True
    try:
        cluster.patch_status(
            rt.api, meta["namespace"], meta["name"], meta["resourceVersion"], todo.status
        )
    except ApiException as exc:
        if exc.status not in (404, 409):  # changed or gone meanwhile: the next tick re-plans
            raise
        return False
    return True


def _pruned(value: Any) -> Any:
    """value without None entries: a merge patch's null means "remove", as if absent."""
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _phase(status: Any) -> Any:
    return ((status or {}).get("restart") or {}).get("phase")


def reconcile(rt: Runtime, namespace: str, name: str) -> None:
    """Observe, plan, act, report for one pool. Safe to call at any time, any number of times.

    When the restart moved to a new phase, go round again at once (each phase is still written
    to status), so a restart is not slowed down by the timer's period.
    """
    body = cluster.get_pool(rt.api, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    with rt.lock_for(body["metadata"]["uid"]):
        for _ in range(len(PHASES)):
            body = cluster.get_pool(rt.api, namespace, name)  # fresh, under the lock
            if body is None or body["metadata"].get("deletionTimestamp"):
                return
            observed, conn = observe(rt, body)
            todo = plan(observed)
            after = act(rt, body, todo, conn)
            if not report(rt, body, todo, after):
                return
            if _phase(todo.status) == _phase(observed.status):
                return


def forget(rt: Runtime, body: dict[str, Any]) -> None:
    """A pool was deleted: drop its clocks and lock, and lift what its restart had paused.

    Without a finalizer the operator cannot act before the pool is gone, only after (it sees
    the DELETED event when it runs). A pool deleted mid-restart had paused its queues under the
    restart's holder name; those holds are lifted here (nobody else's). A pool deleted while
    the operator was down leaves them: `finex workers resume --worker QUEUE` (docs/runbook.md)
    lifts them by hand, and QueuePausedTooLong says so.
    """
    meta = body.get("metadata") or {}
    uid = meta.get("uid", "")
    # Under the pool's lock: a reconcile in flight (it read the pool before the deletion) may
    # still pause a queue in its Pausing step; lifting before it ends would leave that pause
    # for good. A reconcile after this one finds the pool gone and does nothing.
    with rt.lock_for(uid):
        _lift_restart_pauses(rt, body)
    rt.last_sweep.pop(uid, None)
    with rt.guard:
        rt.locks.pop(uid, None)


def _lift_restart_pauses(rt: Runtime, body: dict[str, Any]) -> None:
    meta = body.get("metadata") or {}
    if _phase(body.get("status")) in (None, "Done"):
        return
    try:
        spec = parse_spec(body["spec"])
        url = cluster.secret_value(
            rt.api, meta["namespace"], spec.redis_url.name, spec.redis_url.key
        )
        conn = rt.redis_for(url)
        restart = (body.get("status") or {}).get("restart") or {}
        for queue in restart.get("queues") or spec.queue_names:
            for holder in (control.Holder.OPERATOR_RESTART, control.Holder.LEGACY_OPERATOR):
                if control.release(conn, queue, by=holder):
                    log.info("pool %s/%s was deleted mid-restart: lifted its pause of %s",
                             meta["namespace"], meta["name"], queue)  # fmt: skip
    except (cluster.SecretError, redis.RedisError, ValueError, KeyError) as exc:
        log.warning("pool %s was deleted mid-restart; its queues may stay paused: %s",
                    meta.get("name"), exc)  # fmt: skip
