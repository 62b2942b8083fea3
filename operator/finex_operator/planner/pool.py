"""plan() for one pool: each concern in turn, then the status that reports them all."""

from __future__ import annotations

from finex_operator.planner.annotations import unknown_annotation_message, unknown_annotations
from finex_operator.planner.autoscale import decide_pool
from finex_operator.planner.deletion_cost import plan_deletion_costs
from finex_operator.planner.deployments import plan_deployments
from finex_operator.planner.dlq import plan_dlq
from finex_operator.planner.model import Event, Observed, Plan
from finex_operator.planner.pause import plan_pause
from finex_operator.planner.removal import plan_removals
from finex_operator.planner.restart import plan_restart
from finex_operator.planner.status import build_status, queue_entries
from finex_operator.reasons import EventReason


def plan(obs: Observed) -> Plan:
    """Decide one reconcile's actions and the status to report. Pure.

    The order matters: the declarative pause and the Deployments follow the restart as it is
    after this reconcile's step (a queue being restarted stays paused, and goes to 0 replicas
    in Stopping).
    """
    out = Plan()
    unknown = plan_unknown_annotations(obs, out)
    restart = plan_restart(obs, out)
    paused_by_spec = plan_pause(obs, out, restart)
    dlq_status, parked = plan_dlq(obs, out)
    if obs.sweep_due and obs.queues is not None:
        out.sweep = list(obs.spec.queue_names)
    decisions = decide_pool(obs)
    plan_deletion_costs(obs, out)
    not_ready = plan_deployments(obs, out, restart, decisions)
    plan_removals(obs, out)
    out.status = build_status(
        obs,
        restart=restart,
        queues=queue_entries(obs, parked, decisions),
        not_ready=not_ready,
        dlq=dlq_status,
        paused_by_spec=paused_by_spec,
        unknown_annotations=unknown,
    )
    return out


def plan_unknown_annotations(obs: Observed, plan: Plan) -> list[str]:
    """A Warning for each unknown finex.io/ annotation not warned about yet; returns them all.

    status.unknownAnnotations remembers the ones already reported, so the 1 s timer does not
    repeat the Warning; an annotation removed and set again is reported again.
    """
    unknown = unknown_annotations(obs.annotations)
    reported = set(obs.status.get("unknownAnnotations") or ())
    for key in unknown:
        if key not in reported:
            message = unknown_annotation_message(key)
            plan.events.append(Event("Warning", EventReason.UNKNOWN_ANNOTATION, message))
    return unknown
