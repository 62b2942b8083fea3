"""The declarative pause: spec.paused pauses every queue, and turning it off resumes them."""

from __future__ import annotations

from typing import Final

from finex_operator.planner.model import Event, Observed, Plan
from finex_operator.planner.restart_status import RestartStatus
from finex_operator.reasons import EventReason

#: Who the operator says paused a queue (control.pause's `by`), as the CLI shows it.
PAUSED_BY: Final = "finex-operator"


def plan_pause(obs: Observed, plan: Plan, restart: RestartStatus | None) -> bool:
    """Pause or resume per spec.paused; returns status.pausedBySpec.

    A queue paused by someone else (the CLI) while spec.paused is false is left alone, and so is
    a queue that a running restart holds paused.
    """
    was = bool(obs.status.get("pausedBySpec"))
    if obs.queues is None:
        return was
    if obs.spec.paused:
        todo = [q for q in obs.spec.queue_names if not obs.queues[q].paused]
        if todo:
            plan.pause += [q for q in todo if q not in plan.pause]
            plan.events.append(
                Event("Normal", EventReason.PAUSED, f"spec.paused: paused {', '.join(todo)}")
            )
        return True
    if was:
        held = restart.holds() if restart is not None else frozenset()
        todo = [q for q in obs.spec.queue_names if obs.queues[q].paused and q not in held]
        if todo:
            plan.resume += [q for q in todo if q not in plan.resume]
            plan.events.append(
                Event(
                    "Normal",
                    EventReason.RESUMED,
                    f"spec.paused is false: resumed {', '.join(todo)}",
                )
            )
    return False
