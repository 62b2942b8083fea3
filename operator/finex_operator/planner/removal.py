"""A queue removed from spec.queues: its Deployment is scaled to 0, then deleted.

The Deployment is the pool's child, found by its labels, so a queue that leaves the spec still
has one: it would keep running, outside the connection budget and with nobody managing it. The
operator scales it to 0 (its workers get a warm shutdown and finish their jobs within the Pods'
grace), deletes it once its Pods are gone (Pods stuck past their grace aside), and lifts the
pauses the operator holds on the queue (a running restart's, spec.paused's). A pause someone
else took (the CLI) stays: the queue's jobs are still in Redis, for whoever serves it next.
"""

from __future__ import annotations

from finex_operator import builders
from finex_operator.planner.model import Event, Observed, Plan
from finex_operator.planner.pods import pods_left
from finex_operator.reasons import EventReason
from finex_workers.control.pausing import Holder

#: The holds the operator lifts from a queue that left the pool.
OPERATOR_HOLDS = (Holder.OPERATOR_RESTART, Holder.OPERATOR_SPEC, Holder.LEGACY_OPERATOR)


def removed_queues(obs: Observed) -> list[str]:
    """Queues with a Deployment of this pool that spec.queues no longer lists."""
    return sorted(q for q in obs.deployments if q not in obs.spec.queue_names)


def plan_removals(obs: Observed, plan: Plan) -> None:
    """Scale each removed queue's Deployment to 0, lift the operator's pauses, then delete it.

    The deletion waits until Redis confirmed the pauses are lifted, so a pause is never left
    behind with no Deployment to remind the operator of it.
    """
    for q in removed_queues(obs):
        name = builders.deployment_name(obs.name, q)
        state = obs.queues.get(q) if obs.queues is not None else None
        held = [h for h in OPERATOR_HOLDS if state is not None and h in state.holds]
        plan.resume += [(q, h) for h in held]
        left, _ = pods_left(obs, q)
        if obs.deployments[q].replicas != 0:
            plan.scale[name] = 0
            plan.events.append(
                Event(
                    "Normal",
                    EventReason.QUEUE_REMOVED,
                    f"{q} is no longer in spec.queues: scaling {name} to 0 (its workers finish"
                    " their jobs), then deleting it",
                )
            )
        elif left == 0 and state is not None and not held:
            plan.delete.append(name)
            plan.events.append(
                Event(
                    "Normal",
                    EventReason.DEPLOYMENT_DELETED,
                    f"{name}: deleted, its queue {q} having left spec.queues",
                )
            )
