"""The pure heart of the operator: from what it observed, decide what to do and what to report.

plan() takes an Observed snapshot (the CR, its Deployments and Pods, the queues in Redis, the
clock) and returns a Plan: Deployments to create or patch, queues to pause or resume, DLQ jobs to
retry, queues to sweep, Events to post, and the new status. It does no I/O (no kopf, Kubernetes
or Redis imports), so every decision is covered by table-driven unit tests, and running it twice
on the same world gives the same plan.

One module per concern:

- model: Observed, Plan, Event and the views of Deployments and DLQ jobs;
- annotations: finex.io/restart, finex.io/abort-restart and finex.io/retry-dlq, and how their
  values name queues;
- restart_status: status.restart as a typed, frozen RestartStatus (Phase, RestartResult);
- restart: the restart's state machine, at most one phase per reconcile, with a deadline per
  phase and an abort path; its state lives only in status.restart, so an operator killed in
  any phase picks up where the last one stopped;
- pods: which Pods a restart's Stopping still waits for (not those stuck past their grace);
- pause: the declarative pause (spec.paused), under its own holder name;
- removal: a queue removed from spec.queues (its Deployment scaled to 0, then deleted);
- dlq: the DLQ retry policy and parking;
- autoscale: each queue's replicas from its demand (or fixed, or left to an HPA/KEDA);
- deletion_cost: which Pods a scale-in removes (pod-deletion-cost: idle first);
- deployments: one Deployment per queue, patched when its spec hash differs;
- status: status.queues, totals and conditions;
- pool: plan(), which calls them in that order;
- timestamps: the status's time format.

Reasons of Events and conditions are named in finex_operator.reasons.
"""

from finex_operator.planner.annotations import (
    RESTART_ANNOTATION,
    RETRY_DLQ_ANNOTATION,
    parse_target,
)
from finex_operator.planner.autoscale import ScaleDecision, decide, demand
from finex_operator.planner.deletion_cost import (
    DELETION_COST_ANNOTATION,
    deletion_cost,
    pod_loads,
    pod_of_worker,
)
from finex_operator.planner.model import (
    DeploymentView,
    DlqEntry,
    Event,
    Observed,
    Plan,
    PodLoad,
    PodView,
)
from finex_operator.planner.pause import PAUSED_BY
from finex_operator.planner.pool import plan
from finex_operator.planner.restart import DRAIN_SETTLE_SECONDS, desired_replicas
from finex_operator.planner.restart_status import (
    HISTORY_LIMIT,
    PHASES,
    Phase,
    PhaseRecord,
    RestartResult,
    RestartStatus,
)

__all__ = [
    "DELETION_COST_ANNOTATION",
    "DRAIN_SETTLE_SECONDS",
    "HISTORY_LIMIT",
    "PAUSED_BY",
    "PHASES",
    "RESTART_ANNOTATION",
    "RETRY_DLQ_ANNOTATION",
    "DeploymentView",
    "DlqEntry",
    "Event",
    "Observed",
    "Phase",
    "PhaseRecord",
    "Plan",
    "PodLoad",
    "PodView",
    "RestartResult",
    "RestartStatus",
    "ScaleDecision",
    "decide",
    "deletion_cost",
    "demand",
    "desired_replicas",
    "parse_target",
    "plan",
    "pod_loads",
    "pod_of_worker",
]
