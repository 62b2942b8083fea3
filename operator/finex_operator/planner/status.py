"""The status the reconcile writes: per-queue figures, totals, conditions, and the parts the
other concerns decided (status.restart, status.dlq, status.pausedBySpec)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from finex_operator.conditions import Condition, ConditionType, merge_conditions
from finex_operator.planner.autoscale import ScaleDecision, status_fields
from finex_operator.planner.model import Observed
from finex_operator.planner.restart_status import RestartResult, RestartStatus
from finex_operator.planner.timestamps import format_time
from finex_operator.reasons import ConditionReason

#: The Restarting condition's reason once no restart runs: how the last one ended.
_LAST_RESTART: Final = {
    RestartResult.NONE: ConditionReason.NO_RESTART,
    RestartResult.SUCCEEDED: ConditionReason.RESTART_SUCCEEDED,
    RestartResult.ABORTED: ConditionReason.RESTART_ABORTED,
    RestartResult.REFUSED: ConditionReason.RESTART_REFUSED,
}


def queue_entries(
    obs: Observed,
    parked: Mapping[str, Sequence[str]],
    decisions: Mapping[str, ScaleDecision] | None = None,
) -> list[dict[str, Any]]:
    """status.queues[]: each queue's Deployment, its scaling decision and, when Redis answered,
    its queue figures."""
    out = []
    for q in obs.spec.queue_names:
        dep = obs.deployments.get(q)
        entry: dict[str, Any] = {
            "name": q,
            "replicas": dep.replicas if dep else 0,
            "readyReplicas": dep.ready_replicas if dep else 0,
            "parked": len(parked.get(q, [])),
        }
        decision = (decisions or {}).get(q)
        if decision is not None:
            entry.update(status_fields(decision, dep.replicas if dep else 0))
        state = obs.queues.get(q) if obs.queues is not None else None
        if state is not None:
            entry.update(
                waiting=state.waiting,
                active=state.active,
                failed=state.failed,
                workers=state.workers,
                paused=state.paused,
            )
        out.append(entry)
    return out


def conditions(
    obs: Observed, restart: RestartStatus | None, not_ready: list[str], parked_total: int
) -> list[Condition]:
    """Ready, Restarting and Degraded, as this reconcile sees them."""
    if restart is not None and restart.running:
        ready = Condition(
            ConditionType.READY,
            "False",
            ConditionReason.RESTARTING,
            f"restart in phase {restart.phase}",
        )
        # While a restart runs, its phase is the reason (see finex_operator.reasons).
        restarting = Condition(
            ConditionType.RESTARTING, "True", str(restart.phase), restart.message
        )
    else:
        if not_ready:
            ready = Condition(
                ConditionType.READY,
                "False",
                ConditionReason.DEPLOYMENTS_NOT_READY,
                ", ".join(not_ready),
            )
        else:
            ready = Condition(
                ConditionType.READY,
                "True",
                ConditionReason.ALL_QUEUES_READY,
                "every queue's Pods are Ready",
            )
        last = restart.result if restart is not None else RestartResult.NONE
        restarting = Condition(
            ConditionType.RESTARTING,
            "False",
            _LAST_RESTART[last],
            restart.message if restart is not None else "",
        )
    if obs.queues is None:
        degraded = Condition(
            ConditionType.DEGRADED, "True", ConditionReason.REDIS_UNAVAILABLE, obs.redis_error
        )
    elif restart is not None and not restart.running and restart.result is RestartResult.ABORTED:
        degraded = Condition(
            ConditionType.DEGRADED, "True", ConditionReason.RESTART_ABORTED, restart.message
        )
    elif parked_total:
        degraded = Condition(
            ConditionType.DEGRADED,
            "True",
            ConditionReason.JOBS_PARKED,
            f"{parked_total} DLQ job(s) parked after max retries",
        )
    else:
        degraded = Condition(ConditionType.DEGRADED, "False", ConditionReason.AS_EXPECTED, "")
    return [ready, restarting, degraded]


def build_status(
    obs: Observed,
    *,
    restart: RestartStatus | None,
    queues: list[dict[str, Any]],
    not_ready: list[str],
    dlq: dict[str, Any],
    paused_by_spec: bool,
    unknown_annotations: list[str] | None = None,
) -> dict[str, Any]:
    """The whole .status to merge-patch (the reconcile patches it only if it changed)."""
    parked_total = sum(int(q.get("parked", 0)) for q in queues)
    status: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "conditions": merge_conditions(
            obs.status.get("conditions"),
            conditions(obs, restart, not_ready, parked_total),
            generation=obs.generation,
            now=format_time(obs.now),
        ),
        "queues": queues,
        "pausedBySpec": paused_by_spec,
        "dlq": dlq,
        # Always written, [] included: the merge patch must be able to forget a removed key.
        "unknownAnnotations": list(unknown_annotations or []),
    }
    if obs.queues is not None:
        status["totals"] = {
            "waiting": sum(int(q.get("waiting", 0)) for q in queues),
            "active": sum(int(q.get("active", 0)) for q in queues),
            "dlq": sum(int(q.get("failed", 0)) for q in queues),
            "replicas": sum(int(q.get("replicas", 0)) for q in queues),
            "desiredReplicas": sum(int(q.get("desiredReplicas", 0)) for q in queues),
        }
    elif "totals" in obs.status:
        status["totals"] = obs.status["totals"]
    if restart is not None:
        status["restart"] = restart.to_status()
    status["scaling"] = "; ".join(
        f"{q['name']} {q['replicas']}->{q['desiredReplicas']} {q['scaleReason']}"
        for q in queues
        if "scaleReason" in q
    )
    return status
