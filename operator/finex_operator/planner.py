"""The pure heart of the operator: from what it observed, decide what to do and what to report.

plan() takes an Observed snapshot (the CR, its Deployments and Pods, the queues in Redis, the
clock) and returns a Plan: Deployments to create or patch, queues to pause or resume, DLQ jobs to
retry, queues to sweep, Events to post, and the new status. It does no I/O, so every decision is
covered by table-driven unit tests, and running it twice on the same world gives the same plan.

The restart walks Pausing -> Draining -> Stopping -> Starting -> Resuming -> Done, at most one
phase per reconcile. Its state lives only in status.restart, so an operator killed in any phase
picks up where the last one stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from finex_operator import builders
from finex_operator.conditions import Condition, merge_conditions
from finex_operator.spec import PoolSpec
from finex_workers.control import QueueState

RESTART_ANNOTATION = "finex.io/restart"
RETRY_DLQ_ANNOTATION = "finex.io/retry-dlq"

PAUSING, DRAINING, STOPPING, STARTING, RESUMING, DONE = (
    "Pausing",
    "Draining",
    "Stopping",
    "Starting",
    "Resuming",
    "Done",
)
PHASES = (PAUSING, DRAINING, STOPPING, STARTING, RESUMING, DONE)
HISTORY_LIMIT = 12
#: Draining lasts at least this long, so a job a worker popped just before the pause has
#: registered as started before "no active jobs" is believed.
DRAIN_SETTLE_SECONDS = 1.0
PAUSED_BY = "finex-operator"


@dataclass(frozen=True)
class DeploymentView:
    """What the operator reads back from one child Deployment."""

    replicas: int
    ready_replicas: int
    spec_hash: str


@dataclass(frozen=True)
class DlqEntry:
    """One DLQ job as the policy sees it."""

    id: str
    retries: int
    failed_at: datetime | None


@dataclass(frozen=True)
class Observed:
    """One consistent-enough snapshot of the world, taken at the start of a reconcile."""

    name: str
    uid: str
    generation: int
    spec: PoolSpec
    now: datetime
    status: Mapping[str, Any] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    deployments: Mapping[str, DeploymentView] = field(default_factory=dict)
    pods: Mapping[str, int] = field(default_factory=dict)
    #: None when Redis could not be read; redis_error then says why.
    queues: Mapping[str, QueueState] | None = None
    redis_error: str = ""
    dlq: Mapping[str, Sequence[DlqEntry]] = field(default_factory=dict)
    sweep_due: bool = False
    grace_margin: int = 30


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event on the pool: type Normal or Warning, a CamelCase reason."""

    type: str
    reason: str
    message: str


@dataclass
class Plan:
    """Everything one reconcile should do, in the order the actor does it."""

    apply: list[dict[str, Any]] = field(default_factory=list)
    pause: list[str] = field(default_factory=list)
    resume: list[str] = field(default_factory=list)
    retry_dlq: dict[str, list[str] | None] = field(default_factory=dict)  # None: the whole DLQ
    sweep: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)


# -- annotations ------------------------------------------------------------------------------


def parse_target(value: str, pool_queues: Sequence[str]) -> tuple[list[str], str]:
    """Queues named by an annotation value, and an error ("" if fine).

    `<queue>[,<queue>...]@<nonce>` names queues; any value without '@' means all of the pool's
    queues (a timestamp is the usual choice).
    """
    if "@" not in value:
        return list(pool_queues), ""
    names_part = value.split("@", 1)[0]
    names = [n.strip() for n in names_part.split(",") if n.strip()]
    unknown = [n for n in names if n not in pool_queues]
    if not names or unknown:
        return [], (
            f"value {value!r} names {', '.join(unknown) or 'no queue'}; this pool's queues are "
            f"{', '.join(pool_queues)} (syntax: <queue>[,<queue>]@<nonce>, or no '@' for all)"
        )
    return [q for q in pool_queues if q in names], ""


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ts(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- restart ----------------------------------------------------------------------------------


def _enter(restart: dict[str, Any], phase: str, now: datetime, message: str) -> None:
    restart["phase"] = phase
    restart["phaseStartedAt"] = _ts(now)
    restart["message"] = message
    history = [*restart.get("history", []), {"phase": phase, "at": _ts(now)}]
    restart["history"] = history[-HISTORY_LIMIT:]


def _plan_new_restart(
    obs: Observed, plan: Plan, restart: dict[str, Any] | None, value: str | None
) -> dict[str, Any] | None:
    """No restart running: start one if the annotation carries a value not yet handled."""
    if value is None or (restart is not None and value == restart.get("requestedValue")):
        return restart
    if not obs.status.get("observedGeneration"):
        # First sight of the pool: an annotation it was created with is the baseline.
        return {
            "phase": DONE,
            "result": "",
            "requestedValue": value,
            "queues": [],
            "message": "annotation present at creation; change its value to restart",
        }
    targets, error = parse_target(value, obs.spec.queue_names)
    if error:
        plan.events.append(Event("Warning", "RestartRefused", error))
        return {
            **(restart or {}),
            "phase": DONE,
            "result": "Refused",
            "requestedValue": value,
            "queues": [],
            "pending": "",
            "message": f"restart refused: {error}",
        }
    new: dict[str, Any] = {
        "result": "",
        "requestedValue": value,
        "queues": targets,
        "startedAt": _ts(obs.now),
        "finishedAt": None,  # JSON merge patch: removes the last restart's value
        "pending": "",
        "history": [],
    }
    _enter(new, PAUSING, obs.now, f"restart of {', '.join(targets)} requested ({value})")
    plan.events.append(Event("Normal", "RestartStarted", f"{new['message']}; pausing the queues"))
    return new


def _plan_restart(obs: Observed, plan: Plan) -> dict[str, Any] | None:
    """Advance the restart by at most one phase; returns the new status.restart."""
    previous = obs.status.get("restart")
    restart: dict[str, Any] | None = dict(previous) if previous else None
    value = obs.annotations.get(RESTART_ANNOTATION)
    if restart is None or restart.get("phase") == DONE:
        return _plan_new_restart(obs, plan, restart, value)

    assert restart is not None
    # A queue removed from the spec mid-restart is dropped from it (its Deployment is gone).
    targets = [q for q in restart.get("queues", []) if q in obs.spec.queue_names]
    phase = restart.get("phase")
    if value is not None and value != restart.get("requestedValue"):
        if restart.get("pending") != value:
            plan.events.append(
                Event(
                    "Normal",
                    "RestartQueued",
                    f"restart {value!r} requested while restart {restart.get('requestedValue')!r}"
                    f" is {phase}; it starts when this one is done",
                )
            )
        restart["pending"] = value
    elif restart.get("pending"):
        restart["pending"] = ""

    if obs.queues is None and phase in (PAUSING, DRAINING, RESUMING):
        restart["message"] = f"waiting for Redis to continue {phase}: {obs.redis_error}"
        return restart
    step = _PHASE_STEPS.get(str(phase))
    if step is not None:
        step(obs, plan, restart, targets)
    return restart


def _step_pausing(obs: Observed, plan: Plan, restart: dict[str, Any], targets: list[str]) -> None:
    assert obs.queues is not None
    plan.pause += [q for q in targets if not obs.queues[q].paused]
    _enter(restart, DRAINING, obs.now, f"paused {', '.join(targets)}; waiting for active jobs")
    plan.events.append(Event("Normal", "RestartDraining", restart["message"]))


def _step_draining(obs: Observed, plan: Plan, restart: dict[str, Any], targets: list[str]) -> None:
    states = obs.queues
    assert states is not None
    plan.pause += [q for q in targets if not states[q].paused]  # re-assert: level-based
    active = sum(states[q].active for q in targets)
    started = _parse_ts(restart.get("phaseStartedAt")) or obs.now
    waited = (obs.now - started).total_seconds()
    timeout = obs.spec.drain_timeout_seconds
    if active == 0 and waited >= DRAIN_SETTLE_SECONDS:
        _enter(restart, STOPPING, obs.now, f"drained in {waited:.0f}s; scaling to 0")
        plan.events.append(Event("Normal", "RestartStopping", restart["message"]))
    elif active == 0 or waited < timeout:
        restart["message"] = f"draining: {active} active job(s) after {waited:.0f}s"
    elif obs.spec.on_drain_timeout == "Proceed":
        message = (
            f"drain timed out after {timeout}s with {active} active job(s); "
            "proceeding (onDrainTimeout=Proceed): workers get a warm shutdown"
        )
        _enter(restart, STOPPING, obs.now, message)
        plan.events.append(Event("Warning", "DrainTimedOut", message))
    else:
        message = (
            f"drain timed out after {timeout}s with {active} active job(s); "
            "aborting (onDrainTimeout=Abort): resuming the queues without a restart"
        )
        restart["result"] = "Aborted"
        _enter(restart, RESUMING, obs.now, message)
        plan.events.append(Event("Warning", "DrainTimedOut", message))


def _step_stopping(obs: Observed, plan: Plan, restart: dict[str, Any], targets: list[str]) -> None:
    left = {q: obs.pods.get(q, 0) for q in targets}
    scaled = all(q in obs.deployments and obs.deployments[q].replicas == 0 for q in targets)
    if scaled and not any(left.values()):
        _enter(restart, STARTING, obs.now, "all Pods gone; scaling back up")
        plan.events.append(Event("Normal", "RestartStarting", restart["message"]))
    else:
        restart["message"] = "waiting for Pods to stop: " + ", ".join(
            f"{q} {n}" for q, n in left.items()
        )


def _step_starting(obs: Observed, plan: Plan, restart: dict[str, Any], targets: list[str]) -> None:
    waiting = []
    for q in targets:
        want = obs.spec.queue(q).replicas
        dep = obs.deployments.get(q)
        if dep is None or dep.replicas != want or dep.ready_replicas != want:
            waiting.append(f"{q} {dep.ready_replicas if dep else 0}/{want}")
    if waiting:
        restart["message"] = "waiting for Pods to be Ready: " + ", ".join(waiting)
    else:
        _enter(restart, RESUMING, obs.now, "all Pods Ready; resuming the queues")
        plan.events.append(Event("Normal", "RestartResuming", restart["message"]))


def _step_resuming(obs: Observed, plan: Plan, restart: dict[str, Any], targets: list[str]) -> None:
    assert obs.queues is not None
    result = restart.get("result") or "Succeeded"
    if obs.spec.paused:
        note = "spec.paused is true, so the queues stay paused"
    else:
        plan.resume += [q for q in targets if obs.queues[q].paused]
        note = f"resumed {', '.join(targets)}"
    restart["result"] = result
    restart["finishedAt"] = _ts(obs.now)
    begun = _parse_ts(restart.get("startedAt")) or obs.now
    took = (obs.now - begun).total_seconds()
    _enter(restart, DONE, obs.now, f"restart {result.lower()} in {took:.0f}s; {note}")
    kind = "Normal" if result == "Succeeded" else "Warning"
    plan.events.append(Event(kind, f"Restart{result}", restart["message"]))


_PHASE_STEPS: dict[str, Callable[[Observed, Plan, dict[str, Any], list[str]], None]] = {
    PAUSING: _step_pausing,
    DRAINING: _step_draining,
    STOPPING: _step_stopping,
    STARTING: _step_starting,
    RESUMING: _step_resuming,
}


def _restart_holds(restart: Mapping[str, Any] | None) -> set[str]:
    """Queues a restart in progress keeps paused (the declarative pause must not resume them)."""
    if not restart or restart.get("phase") in (DONE, RESUMING, None):
        return set()
    return set(restart.get("queues", []))


def desired_replicas(spec: PoolSpec, queue: str, restart: Mapping[str, Any] | None) -> int:
    """The spec's replicas, except 0 for a queue whose restart is in Stopping."""
    if restart and restart.get("phase") == STOPPING and queue in restart.get("queues", []):
        return 0
    return spec.queue(queue).replicas


# -- declarative pause ------------------------------------------------------------------------


def _plan_pause(obs: Observed, plan: Plan, restart: Mapping[str, Any] | None) -> bool:
    """spec.paused pauses every queue; turning it off resumes the queues it paused."""
    was = bool(obs.status.get("pausedBySpec"))
    if obs.queues is None:
        return was
    if obs.spec.paused:
        todo = [q for q in obs.spec.queue_names if not obs.queues[q].paused]
        if todo:
            plan.pause += [q for q in todo if q not in plan.pause]
            plan.events.append(Event("Normal", "Paused", f"spec.paused: paused {', '.join(todo)}"))
        return True
    if was:
        held = _restart_holds(restart)
        todo = [q for q in obs.spec.queue_names if obs.queues[q].paused and q not in held]
        if todo:
            plan.resume += [q for q in todo if q not in plan.resume]
            plan.events.append(
                Event("Normal", "Resumed", f"spec.paused is false: resumed {', '.join(todo)}")
            )
    return False


# -- DLQ --------------------------------------------------------------------------------------


def _plan_dlq(obs: Observed, plan: Plan) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Forced retries by annotation, then automatic retries with backoff; returns parked ids."""
    previous = dict(obs.status.get("dlq") or {})
    value = obs.annotations.get(RETRY_DLQ_ANNOTATION)
    policy = obs.spec.dlq
    parked: dict[str, list[str]] = {
        q: [e.id for e in obs.dlq.get(q, ()) if e.retries >= policy.max_retries]
        for q in obs.spec.queue_names
    }
    if obs.queues is None:
        return previous, parked
    if value is not None and value != previous.get("retryRequest"):
        if not obs.status.get("observedGeneration"):
            previous["retryRequest"] = value  # baseline at creation, like the restart
            return previous, parked
        targets, error = parse_target(value, obs.spec.queue_names)
        previous["retryRequest"] = value
        if error:
            previous["message"] = f"retry refused: {error}"
            plan.events.append(Event("Warning", "DLQRetryRefused", error))
            return previous, parked
        for q in targets:
            plan.retry_dlq[q] = None
        previous["lastRetryAt"] = _ts(obs.now)
        previous["message"] = f"retry of the whole DLQ of {', '.join(targets)} requested ({value})"
        plan.events.append(Event("Normal", "DLQRetryRequested", previous["message"]))
        return previous, {q: [] if q in targets else ids for q, ids in parked.items()}
    if not policy.auto_retry:
        return previous, parked
    for q in obs.spec.queue_names:
        due = [
            e.id
            for e in obs.dlq.get(q, ())
            if e.retries < policy.max_retries
            and (
                e.failed_at is None
                or (obs.now - e.failed_at) >= timedelta(seconds=policy.backoff(e.retries))
            )
        ]
        if due:
            plan.retry_dlq[q] = due
            shown = ", ".join(due[:5]) + (" ..." if len(due) > 5 else "")
            plan.events.append(
                Event("Normal", "DLQAutoRetry", f"{q}: retrying {len(due)} job(s): {shown}")
            )
    before = {str(s.get("name")): int(s.get("parked", 0)) for s in obs.status.get("queues", [])}
    for q, ids in parked.items():
        if len(ids) > before.get(q, 0):
            shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
            plan.events.append(
                Event(
                    "Warning",
                    "DLQJobsParked",
                    f"{q}: {len(ids)} job(s) reached dlq.maxRetries={policy.max_retries} and are"
                    f" parked with their last error (retry with {RETRY_DLQ_ANNOTATION}): {shown}",
                )
            )
    return previous, parked


# -- the plan ---------------------------------------------------------------------------------


def plan(obs: Observed) -> Plan:
    """Decide one reconcile's actions and the status to report. Pure."""
    out = Plan()
    restart = _plan_restart(obs, out)
    paused_by_spec = _plan_pause(obs, out, restart)
    dlq_status, parked = _plan_dlq(obs, out)
    if obs.sweep_due and obs.queues is not None:
        out.sweep = list(obs.spec.queue_names)

    not_ready = []
    queue_status = []
    for q in obs.spec.queue_names:
        want = desired_replicas(obs.spec, q, restart)
        body = builders.deployment(
            pool=obs.name,
            uid=obs.uid,
            spec=obs.spec,
            queue=q,
            replicas=want,
            grace_margin=obs.grace_margin,
        )
        dep = obs.deployments.get(q)
        if (
            dep is None
            or dep.spec_hash != body["metadata"]["annotations"][builders.HASH_ANNOTATION]
        ):
            out.apply.append(body)
        if dep is None or dep.replicas != want or dep.ready_replicas != want:
            not_ready.append(f"{q} {dep.ready_replicas if dep else 0}/{want}")
        state = obs.queues.get(q) if obs.queues is not None else None
        entry: dict[str, Any] = {
            "name": q,
            "replicas": dep.replicas if dep else 0,
            "readyReplicas": dep.ready_replicas if dep else 0,
            "parked": len(parked.get(q, [])),
        }
        if state is not None:
            entry.update(
                waiting=state.waiting,
                active=state.active,
                failed=state.failed,
                workers=state.workers,
                paused=state.paused,
            )
        queue_status.append(entry)
    for body in out.apply:
        name = body["metadata"]["name"]
        replicas = body["spec"]["replicas"]
        out.events.append(
            Event("Normal", "DeploymentApplied", f"{name}: applied the spec (replicas {replicas})")
        )

    out.status = _status(
        obs,
        restart=restart,
        queues=queue_status,
        not_ready=not_ready,
        dlq=dlq_status,
        paused_by_spec=paused_by_spec,
    )
    return out


def _status(
    obs: Observed,
    *,
    restart: dict[str, Any] | None,
    queues: list[dict[str, Any]],
    not_ready: list[str],
    dlq: dict[str, Any],
    paused_by_spec: bool,
) -> dict[str, Any]:
    phase = (restart or {}).get("phase")
    restarting = phase is not None and phase != DONE
    if restarting:
        ready = Condition("Ready", "False", "Restarting", f"restart in phase {phase}")
        restarting_c = Condition(
            "Restarting", "True", str(phase), (restart or {}).get("message", "")
        )
    else:
        if not_ready:
            ready = Condition("Ready", "False", "DeploymentsNotReady", ", ".join(not_ready))
        else:
            ready = Condition("Ready", "True", "AllQueuesReady", "every queue's Pods are Ready")
        last = (restart or {}).get("result") or ""
        restarting_c = Condition(
            "Restarting",
            "False",
            f"Restart{last}" if last else "NoRestart",
            (restart or {}).get("message", ""),
        )
    parked_total = sum(int(q.get("parked", 0)) for q in queues)
    if obs.queues is None:
        degraded = Condition("Degraded", "True", "RedisUnavailable", obs.redis_error)
    elif parked_total:
        degraded = Condition(
            "Degraded", "True", "JobsParked", f"{parked_total} DLQ job(s) parked after max retries"
        )
    else:
        degraded = Condition("Degraded", "False", "AsExpected", "")
    status: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "conditions": merge_conditions(
            obs.status.get("conditions"),
            [ready, restarting_c, degraded],
            generation=obs.generation,
            now=_ts(obs.now),
        ),
        "queues": queues,
        "pausedBySpec": paused_by_spec,
        "dlq": dlq,
    }
    if obs.queues is not None:
        status["totals"] = {
            "waiting": sum(int(q.get("waiting", 0)) for q in queues),
            "active": sum(int(q.get("active", 0)) for q in queues),
            "dlq": sum(int(q.get("failed", 0)) for q in queues),
        }
    elif "totals" in obs.status:
        status["totals"] = obs.status["totals"]
    if restart is not None:
        status["restart"] = restart
    return status
