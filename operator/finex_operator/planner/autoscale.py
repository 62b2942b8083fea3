"""Backlog autoscaling of one queue: from its demand to the replica count, and why.

Demand is what a queue needs workers for: jobs waiting in its list, jobs running now, and jobs
scheduled to come back (retries with a backoff, deferred jobs). A list-length scaler sees only
the first of the three, so it scales in while the fleet is still busy.

The decision is level-based: it reads the queue's numbers and what the last reconcile decided
(status.queues[]), never a history of its own. Scaling up happens at once; scaling down waits
until the demand has wanted fewer replicas for scaleDownStabilizationSeconds without a break
(status.queues[].scaleDownSince remembers since when), like the HPA's scale-down window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from finex_operator.planner.model import Observed
from finex_operator.planner.timestamps import format_time, parse_time
from finex_operator.reasons import ScaleReason
from finex_operator.spec import Autoscale, QueueSpec
from finex_workers.control import QueueState


@dataclass(frozen=True)
class ScaleDecision:
    """One queue's replica count this reconcile. replicas None: the operator does not set it."""

    replicas: int | None
    reason: ScaleReason
    message: str
    demand: int | None = None
    scale_down_since: datetime | None = None

    @property
    def changed(self) -> bool:
        """Whether this decision moves the replicas (an Event is posted for it)."""
        return self.reason in (ScaleReason.SCALED_UP, ScaleReason.SCALED_DOWN)


def demand(state: QueueState) -> int:
    """Jobs that need a worker now or soon: waiting + active + delayed (scheduled retries)."""
    return state.demand


def wanted(auto: Autoscale, ceiling: int, jobs: int) -> int:
    """The replicas a demand asks for, within [minReplicas, ceiling]; 0 only for no demand."""
    return max(auto.min_replicas, min(ceiling, math.ceil(jobs / auto.jobs_per_replica)))


def decide(
    auto: Autoscale,
    ceiling: int,
    state: QueueState | None,
    current: int | None,
    *,
    since: datetime | None,
    now: datetime,
) -> ScaleDecision:
    """The replicas of an autoscaled queue. Pure.

    current is what the last reconcile decided (None for a new queue). since is when demand
    first wanted fewer replicas than current, without a break (None: it does not).
    """
    if state is None:
        held = current if current is not None else auto.min_replicas
        return ScaleDecision(held, ScaleReason.NO_DEMAND_READING, "Redis unreadable; holding")
    jobs = demand(state)
    target = wanted(auto, ceiling, jobs)
    what = (
        f"demand {jobs} (waiting {state.waiting} + active {state.active} + delayed "
        f"{state.delayed}) at {auto.jobs_per_replica} per replica wants {target}"
    )
    if current is None and target == 0:
        return ScaleDecision(0, ScaleReason.STEADY, what, jobs)  # a new, idle queue: no Pod
    if current is None or target > current:
        start = "" if current is None else f"{current} -> "
        return ScaleDecision(target, ScaleReason.SCALED_UP, f"{start}{target}: {what}", jobs)
    if target == current:
        return ScaleDecision(current, ScaleReason.STEADY, what, jobs)
    since = since or now
    left = auto.scale_down_stabilization_seconds - (now - since).total_seconds()
    if left > 0:
        return ScaleDecision(
            current,
            ScaleReason.STABILIZING,
            f"{what}; keeping {current} for {left:.0f}s more (scaleDownStabilizationSeconds)",
            jobs,
            since,
        )
    return ScaleDecision(target, ScaleReason.SCALED_DOWN, f"{current} -> {target}: {what}", jobs)


def _previous(status: Mapping[str, Any], queue: str) -> Mapping[str, Any]:
    for entry in status.get("queues") or ():
        if entry.get("name") == queue:
            return dict(entry)
    return {}


def decide_queue(obs: Observed, spec: QueueSpec) -> ScaleDecision:
    """The decision for one queue of the pool, in any of the three modes."""
    auto = spec.autoscale
    dep = obs.deployments.get(spec.name)
    if auto is None:
        return ScaleDecision(spec.replicas, ScaleReason.FIXED, "spec.queues[].replicas")
    if auto.external:
        return ScaleDecision(
            None,
            ScaleReason.EXTERNAL,
            "autoscale.mode External: spec.replicas belongs to an HPA or KEDA",
        )
    before = _previous(obs.status, spec.name)
    current = before.get("desiredReplicas")
    if current is None and dep is not None:
        current = dep.replicas
    state = obs.queues.get(spec.name) if obs.queues is not None else None
    return decide(
        auto,
        spec.max_replicas or auto.min_replicas or 1,
        state,
        None if current is None else int(current),
        since=parse_time(before.get("scaleDownSince")),
        now=obs.now,
    )


def decide_pool(obs: Observed) -> dict[str, ScaleDecision]:
    """Every queue's decision, by queue."""
    return {q: decide_queue(obs, obs.spec.queue(q)) for q in obs.spec.queue_names}


def status_fields(decision: ScaleDecision, current: int) -> dict[str, Any]:
    """What status.queues[] says about scaling (scaleDownSince null clears it)."""
    return {
        "desiredReplicas": current if decision.replicas is None else decision.replicas,
        "demand": decision.demand,
        "scaleReason": str(decision.reason),
        "scaleMessage": decision.message,
        "scaleDownSince": (
            format_time(decision.scale_down_since) if decision.scale_down_since else None
        ),
    }
