"""The Deployments the pool should have: one per queue, patched only when the spec hash differs."""

from __future__ import annotations

from collections.abc import Mapping

from finex_operator import builders
from finex_operator.planner.autoscale import ScaleDecision
from finex_operator.planner.model import Event, Observed, Plan
from finex_operator.planner.restart import desired_replicas
from finex_operator.planner.restart_status import RestartStatus
from finex_operator.reasons import EventReason, ScaleReason

_SCALE_EVENTS = {
    ScaleReason.SCALED_UP: EventReason.SCALED_UP,
    ScaleReason.SCALED_DOWN: EventReason.SCALED_DOWN,
}


def plan_deployments(
    obs: Observed,
    plan: Plan,
    restart: RestartStatus | None,
    decisions: Mapping[str, ScaleDecision] | None = None,
) -> list[str]:
    """Add the Deployments to create or patch; returns the queues not Ready ("matrix 1/2").

    A queue whose replicas the operator does not write (External) is Ready when its Deployment
    has as many Ready Pods as its own spec.replicas, whoever set them.
    """
    not_ready = []
    for q in obs.spec.queue_names:
        decision = (decisions or {}).get(q)
        want = desired_replicas(obs.spec, q, restart, decision)
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
            # Held at 0 by a restart's Stopping, raised again by someone else (KEDA, HPA).
            or (want == 0 and dep.replicas != 0)
        ):
            plan.apply.append(body)
        expect = want if want is not None else (dep.replicas if dep else 1)
        if dep is None or dep.replicas != expect or dep.ready_replicas != expect:
            not_ready.append(f"{q} {dep.ready_replicas if dep else 0}/{expect}")
        if decision is not None and decision.changed and body in plan.apply:
            kind = _SCALE_EVENTS[decision.reason]
            plan.events.append(Event("Normal", kind, f"{q}: {decision.message}"))
    for body in plan.apply:
        name = body["metadata"]["name"]
        replicas = body["spec"].get("replicas", "left to the external autoscaler")
        plan.events.append(
            Event(
                "Normal",
                EventReason.DEPLOYMENT_APPLIED,
                f"{name}: applied the spec (replicas {replicas})",
            )
        )
    return not_ready
