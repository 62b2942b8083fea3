"""The declarative pause: spec.paused pauses every queue, and turning it off resumes them.

spec.paused holds its own pause (control.Holder.OPERATOR_SPEC), beside the restart's and the
CLI's: turning it off lifts only that hold, so a queue someone else paused stays paused, and a
restart never lifts spec.paused's pause.
"""

from __future__ import annotations

from typing import Final

from finex_operator.planner.model import Event, Observed, Plan
from finex_operator.planner.restart_status import RestartStatus
from finex_operator.reasons import EventReason
from finex_workers.control.pausing import Holder

#: The declarative pause's holder name (as `finex workers status` and Redis show it).
PAUSED_BY: Final = Holder.OPERATOR_SPEC


def plan_pause(obs: Observed, plan: Plan, restart: RestartStatus | None) -> bool:
    """Hold or lift spec.paused's pause on every queue; returns status.pausedBySpec.

    A pause written by an operator before holders (Holder.LEGACY_OPERATOR) is lifted here too
    when no restart runs (a running restart lifts it in its Resuming).
    """
    if obs.queues is None:
        return bool(obs.status.get("pausedBySpec"))
    states = obs.queues
    if obs.spec.paused:
        todo = [q for q in obs.spec.queue_names if PAUSED_BY not in states[q].holds]
        if todo:
            plan.pause += [(q, PAUSED_BY) for q in todo]
            plan.events.append(
                Event("Normal", EventReason.PAUSED, f"spec.paused: paused {', '.join(todo)}")
            )
        return True
    lift: list[str] = [PAUSED_BY]
    if restart is None or not restart.running:
        lift.append(Holder.LEGACY_OPERATOR)
    held = [
        (q, h)
        for q in obs.spec.queue_names
        for h in lift
        if h in states[q].holds and (q, h) not in plan.resume  # the restart may lift it too
    ]
    if held:
        plan.resume += held
        queues = sorted({q for q, _ in held}, key=obs.spec.queue_names.index)
        still = [q for q in queues if set(states[q].holds) - set(lift)]
        note = f"; still paused by others: {', '.join(still)}" if still else ""
        plan.events.append(
            Event(
                "Normal",
                EventReason.RESUMED,
                f"spec.paused is false: lifted its pause of {', '.join(queues)}{note}",
            )
        )
    return False
