"""The safe restart's state machine: Pausing, Draining, Stopping, Starting, Resuming, Done.

Each reconcile advances the restart by at most one phase, from the RestartStatus it read. A step
is a function of (what was observed, the restart, its target queues) that returns the next
RestartStatus and adds its actions and Events to the plan.

No phase waits forever. Pausing and Draining have drainTimeoutSeconds, Stopping
stopTimeoutSeconds, Starting startTimeoutSeconds; at its deadline (or on a new
finex.io/abort-restart value) the restart is aborted: it goes to Resuming, which scales the
queues back to what they should have and lifts the pause the restart took (its own hold only,
control.Holder.OPERATOR_RESTART), and it ends Aborted, which the Degraded condition reports.
Resuming is the abort path itself; it waits only for Redis, and the QueuePausedTooLong alert
covers a queue that stays paused for any reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Final, Literal

from finex_operator.planner.annotations import (
    ABORT_RESTART_ANNOTATION,
    RESTART_ANNOTATION,
    describe_target,
    parse_target,
)
from finex_operator.planner.autoscale import ScaleDecision, decide_queue
from finex_operator.planner.model import Event, Observed, Plan
from finex_operator.planner.pods import pods_left
from finex_operator.planner.restart_status import Phase, RestartResult, RestartStatus
from finex_operator.reasons import EventReason
from finex_operator.spec import PoolSpec
from finex_workers.control.pausing import Holder

#: The restart's pause, beside anyone else's (the CLI's, spec.paused's).
HOLDER: Final = Holder.OPERATOR_RESTART
#: Holds the restart lifts in Resuming: its own, and what operators before holders wrote.
_OWN_HOLDS: Final = (Holder.OPERATOR_RESTART, Holder.LEGACY_OPERATOR)

#: Draining lasts at least this long, so a job a worker popped just before the pause has
#: registered as started before "no active jobs" is believed.
DRAIN_SETTLE_SECONDS: Final = 1.0

#: The Event that says how a restart ended.
_FINISHED: Final = {
    RestartResult.SUCCEEDED: EventReason.RESTART_SUCCEEDED,
    RestartResult.ABORTED: EventReason.RESTART_ABORTED,
}


def plan_restart(obs: Observed, plan: Plan) -> RestartStatus | None:
    """Advance the restart by at most one phase; returns the new status.restart (None: none)."""
    stored = obs.status.get("restart")
    restart = RestartStatus.from_status(stored) if stored else None
    value = obs.annotations.get(RESTART_ANNOTATION)
    abort = obs.annotations.get(ABORT_RESTART_ANNOTATION)
    if restart is None or restart.phase is Phase.DONE:
        new = _plan_new_restart(obs, plan, restart, value)
        # With no restart running, an abort value is only the baseline of the next one.
        if new is not None and abort is not None and new.abort_value != abort:
            new = replace(new, abort_value=abort)
        return new

    # A queue removed from the spec mid-restart is dropped from it (its Deployment is gone).
    targets = [q for q in restart.queues if q in obs.spec.queue_names]
    if value is not None and value != restart.requested_value:
        if restart.pending != value:
            plan.events.append(
                Event(
                    "Normal",
                    EventReason.RESTART_QUEUED,
                    f"restart {value!r} requested while restart {restart.requested_value!r}"
                    f" is {restart.phase}; it starts when this one is done",
                )
            )
        restart = replace(restart, pending=value)
    elif restart.pending:
        restart = replace(restart, pending="")

    phase = restart.phase
    if abort is not None and abort != restart.abort_value:
        restart = replace(restart, abort_value=abort)
        if phase in _ABORTABLE:
            queued = restart.pending
            dropped = f"; the queued restart {queued!r} is dropped" if queued else ""
            # The latest finex.io/restart value counts as handled: nothing starts after this.
            latest = value or restart.requested_value
            restart = replace(restart, requested_value=latest, pending="")
            return abort_restart(
                obs,
                plan,
                restart,
                EventReason.RESTART_ABORT_REQUESTED,
                f"{ABORT_RESTART_ANNOTATION}={abort!r} aborted the restart in {phase}{dropped}",
            )
    if obs.queues is None and phase in (Phase.PAUSING, Phase.DRAINING, Phase.RESUMING):
        waited = _waited(obs, restart)
        timeout = obs.spec.drain_timeout_seconds
        if phase is not Phase.RESUMING and waited >= timeout:
            return abort_restart(
                obs,
                plan,
                restart,
                EventReason.RESTART_TIMED_OUT,
                f"{phase} passed its deadline (drainTimeoutSeconds={timeout}) without Redis:"
                f" {obs.redis_error}",
            )
        return replace(restart, message=f"waiting for Redis to continue {phase}: {obs.redis_error}")
    step = _PHASE_STEPS.get(phase) if phase is not None else None
    return step(obs, plan, restart, targets) if step is not None else restart


#: The phases an abort can end early (Resuming is the abort path; Done has nothing to abort).
_ABORTABLE: Final = frozenset({Phase.PAUSING, Phase.DRAINING, Phase.STOPPING, Phase.STARTING})


def _waited(obs: Observed, restart: RestartStatus) -> float:
    """Seconds since the restart entered its current phase."""
    return (obs.now - (restart.phase_started_at or obs.now)).total_seconds()


def abort_restart(
    obs: Observed, plan: Plan, restart: RestartStatus, reason: EventReason, why: str
) -> RestartStatus:
    """Leave the current phase for Resuming, marked Aborted, with a Warning saying why.

    Resuming then lifts the restart's own pauses and writes the Deployments' replicas back
    (desired_replicas no longer holds them at 0); the restart ends Aborted and Degraded says so.
    """
    aborted = replace(restart, result=RestartResult.ABORTED, aborted_in=restart.phase).enter(
        Phase.RESUMING, obs.now, f"{why}; aborting: resuming the queues the restart paused"
    )
    plan.events.append(Event("Warning", reason, aborted.message))
    return aborted


def _past_deadline(
    obs: Observed, plan: Plan, restart: RestartStatus, deadline: tuple[str, int], waiting: str
) -> RestartStatus | None:
    """The aborted restart when the phase has waited its deadline (field, seconds), else None."""
    field, timeout = deadline
    if _waited(obs, restart) < timeout:
        return None
    return abort_restart(
        obs,
        plan,
        restart,
        EventReason.RESTART_TIMED_OUT,
        f"{restart.phase} passed its deadline ({field}={timeout}) while {waiting}",
    )


def _plan_new_restart(
    obs: Observed, plan: Plan, restart: RestartStatus | None, value: str | None
) -> RestartStatus | None:
    """No restart running: start one if the annotation carries a value not yet handled."""
    if value is None or (restart is not None and value == restart.requested_value):
        return restart
    previous = restart or RestartStatus()
    if not obs.status.get("observedGeneration"):
        # First sight of the pool: an annotation it was created with is the baseline.
        message = "annotation present at creation; change its value to restart"
        return _handled_without_restart(previous, value, RestartResult.NONE, message)
    targets, error = parse_target(value, obs.spec.queue_names)
    if error:
        plan.events.append(Event("Warning", EventReason.RESTART_REFUSED, error))
        refused = f"restart refused: {error}"
        return replace(
            _handled_without_restart(previous, value, RestartResult.REFUSED, refused), pending=""
        )
    new = RestartStatus(
        requested_value=value,
        abort_value=previous.abort_value,
        queues=tuple(targets),
        started_at=obs.now,
        finished_at=None,  # rendered as null: the merge patch removes the last restart's time
    ).enter(
        Phase.PAUSING,
        obs.now,
        f"restart of {', '.join(targets)} requested ({value!r}; {describe_target(value)})",
    )
    plan.events.append(
        Event("Normal", EventReason.RESTART_STARTED, f"{new.message}; pausing the queues")
    )
    return new


def _handled_without_restart(
    previous: RestartStatus, value: str, result: RestartResult, message: str
) -> RestartStatus:
    """Done at once: the value is handled (taken as the baseline, or refused) and nothing runs."""
    return replace(
        previous,
        phase=Phase.DONE,
        result=result,
        requested_value=value,
        queues=(),
        message=message,
    )


def _step_pausing(
    obs: Observed, plan: Plan, restart: RestartStatus, targets: list[str]
) -> RestartStatus:
    assert obs.queues is not None
    plan.pause += [(q, HOLDER) for q in targets if HOLDER not in obs.queues[q].holds]
    restart = restart.enter(
        Phase.DRAINING, obs.now, f"paused {', '.join(targets)}; waiting for active jobs"
    )
    plan.events.append(Event("Normal", EventReason.RESTART_DRAINING, restart.message))
    return restart


def _step_draining(
    obs: Observed, plan: Plan, restart: RestartStatus, targets: list[str]
) -> RestartStatus:
    states = obs.queues
    assert states is not None
    plan.pause += [(q, HOLDER) for q in targets if HOLDER not in states[q].holds]  # level-based
    active = sum(states[q].active for q in targets)
    waited = _waited(obs, restart)
    timeout = obs.spec.drain_timeout_seconds
    if active == 0 and waited >= DRAIN_SETTLE_SECONDS:
        restart = restart.enter(Phase.STOPPING, obs.now, f"drained in {waited:.0f}s; scaling to 0")
        plan.events.append(Event("Normal", EventReason.RESTART_STOPPING, restart.message))
        return restart
    if active == 0 or waited < timeout:
        return replace(restart, message=f"draining: {active} active job(s) after {waited:.0f}s")
    timed_out = f"drain timed out after {timeout}s with {active} active job(s); "
    if obs.spec.on_drain_timeout == "Proceed":
        restart = restart.enter(
            Phase.STOPPING,
            obs.now,
            timed_out + "proceeding (onDrainTimeout=Proceed): workers get a warm shutdown",
        )
    else:
        restart = replace(restart, result=RestartResult.ABORTED, aborted_in=Phase.DRAINING).enter(
            Phase.RESUMING,
            obs.now,
            timed_out + "aborting (onDrainTimeout=Abort): resuming the queues without a restart",
        )
    plan.events.append(Event("Warning", EventReason.DRAIN_TIMED_OUT, restart.message))
    return restart


def _step_stopping(
    obs: Observed, plan: Plan, restart: RestartStatus, targets: list[str]
) -> RestartStatus:
    counted = {q: pods_left(obs, q) for q in targets}
    left = {q: n for q, (n, _) in counted.items()}
    stuck = sorted(name for _, names in counted.values() for name in names)
    scaled = all(q in obs.deployments and obs.deployments[q].replicas == 0 for q in targets)
    held = (
        f" ({len(stuck)} Pod(s) held past their grace, a lost node or a finalizer, not waited"
        f" for: {', '.join(stuck)})"
        if stuck
        else ""
    )
    if scaled and not any(left.values()):
        restart = restart.enter(Phase.STARTING, obs.now, f"all Pods gone{held}; scaling back up")
        plan.events.append(Event("Normal", EventReason.RESTART_STARTING, restart.message))
        return restart
    waiting = ", ".join(f"{q} {n}" for q, n in left.items())
    replicas = ", ".join(
        f"{q} replicas {obs.deployments[q].replicas}"
        for q in targets
        if q in obs.deployments and obs.deployments[q].replicas
    )
    status = f"waiting for Pods to stop: {waiting}" + (f"; {replicas}" if replicas else "") + held
    deadline = ("stopTimeoutSeconds", obs.spec.stop_timeout_seconds)
    aborted = _past_deadline(obs, plan, restart, deadline, status)
    return aborted or replace(restart, message=status)


def _step_starting(
    obs: Observed, plan: Plan, restart: RestartStatus, targets: list[str]
) -> RestartStatus:
    waiting = []
    for q in targets:
        want = desired_replicas(obs.spec, q, restart, decide_queue(obs, obs.spec.queue(q)))
        dep = obs.deployments.get(q)
        # A status the controller wrote before our scale-up still counts the old Pods as Ready.
        if dep is None or not dep.current or dep.replicas != want or dep.ready_replicas != want:
            waiting.append(f"{q} {dep.ready_replicas if dep else 0}/{want}")
    if waiting:
        status = "waiting for Pods to be Ready: " + ", ".join(waiting)
        deadline = ("startTimeoutSeconds", obs.spec.start_timeout_seconds)
        aborted = _past_deadline(obs, plan, restart, deadline, status)
        return aborted or replace(restart, message=status)
    restart = restart.enter(Phase.RESUMING, obs.now, "all Pods Ready; resuming the queues")
    plan.events.append(Event("Normal", EventReason.RESTART_RESUMING, restart.message))
    return restart


def _step_resuming(
    obs: Observed, plan: Plan, restart: RestartStatus, targets: list[str]
) -> RestartStatus:
    assert obs.queues is not None
    result = restart.result if restart.result is RestartResult.ABORTED else RestartResult.SUCCEEDED
    mine = [(q, h) for q in targets for h in _OWN_HOLDS if h in obs.queues[q].holds]
    plan.resume += mine
    lifted = sorted({q for q, _ in mine}, key=targets.index)
    others = {
        q: [h for h in obs.queues[q].holds if h not in _OWN_HOLDS]
        for q in targets
        if any(h not in _OWN_HOLDS for h in obs.queues[q].holds)
    }
    note = f"lifted its pause of {', '.join(lifted) or 'no queue'}"
    if others:
        kept = "; ".join(f"{q} by {', '.join(hs)}" for q, hs in others.items())
        note += f"; still paused by others: {kept}"
    took = (obs.now - (restart.started_at or obs.now)).total_seconds()
    restart = replace(restart, result=result, finished_at=obs.now).enter(
        Phase.DONE, obs.now, f"restart {result.lower()} in {took:.0f}s; {note}"
    )
    kind: Literal["Normal", "Warning"] = (
        "Normal" if result is RestartResult.SUCCEEDED else "Warning"
    )
    plan.events.append(Event(kind, _FINISHED[result], restart.message))
    return restart


_Step = Callable[[Observed, Plan, RestartStatus, list[str]], RestartStatus]
_PHASE_STEPS: Final[dict[Phase, _Step]] = {
    Phase.PAUSING: _step_pausing,
    Phase.DRAINING: _step_draining,
    Phase.STOPPING: _step_stopping,
    Phase.STARTING: _step_starting,
    Phase.RESUMING: _step_resuming,
}


def desired_replicas(
    spec: PoolSpec, queue: str, restart: RestartStatus | None, decision: ScaleDecision | None = None
) -> int | None:
    """The replicas to write on a queue's Deployment; None: do not write them (External).

    The scaling decision (the spec's replicas when there is none), except 0 for a queue whose
    restart is in Stopping; an externally scaled queue is then brought back to minReplicas (at
    least 1) in Starting (or in the Resuming of a restart aborted in Stopping or Starting), the
    one other time the operator writes its replicas.
    """
    restarting = restart is not None and queue in restart.queues
    if restarting and restart is not None and restart.phase is Phase.STOPPING:
        return 0
    if decision is None:
        return spec.queue(queue).replicas
    auto = spec.queue(queue).autoscale
    starting = restart is not None and (
        restart.phase is Phase.STARTING
        # An abort after the scale to 0 brings them back as Starting would have.
        or (
            restart.phase is Phase.RESUMING
            and restart.aborted_in in (Phase.STOPPING, Phase.STARTING)
        )
    )
    if decision.replicas is None and auto is not None and restarting and starting:
        return max(1, auto.min_replicas)
    return decision.replicas
