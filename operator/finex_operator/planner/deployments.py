"""The Deployments the pool should have: one per queue, patched only when the spec hash differs."""

from __future__ import annotations

from finex_operator import builders
from finex_operator.planner.model import Event, Observed, Plan
from finex_operator.planner.restart import desired_replicas
from finex_operator.planner.restart_status import RestartStatus
from finex_operator.reasons import EventReason


def plan_deployments(obs: Observed, plan: Plan, restart: RestartStatus | None) -> list[str]:
    """Add the Deployments to create or patch; returns the queues not Ready ("matrix 1/2")."""
    not_ready = []
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
            plan.apply.append(body)
        if dep is None or dep.replicas != want or dep.ready_replicas != want:
            not_ready.append(f"{q} {dep.ready_replicas if dep else 0}/{want}")
    for body in plan.apply:
        name = body["metadata"]["name"]
        replicas = body["spec"]["replicas"]
        plan.events.append(
            Event(
                "Normal",
                EventReason.DEPLOYMENT_APPLIED,
                f"{name}: applied the spec (replicas {replicas})",
            )
        )
    return not_ready
