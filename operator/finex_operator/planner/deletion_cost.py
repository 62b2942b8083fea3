"""Which Pods a scale-in removes: idle ones first, then the one whose running jobs are youngest.

The ReplicaSet controller deletes the Pods with the lowest `controller.kubernetes.io/pod-deletion-
cost` first (after Pods that are unscheduled, pending or not Ready). So the operator keeps that
annotation on every worker Pod at a cost that grows with the work the Pod would lose: 0 for an
idle Pod, then per running job, plus a coarse bucket of the oldest job's age. The cost is a pure
function of Redis (each worker's name holds its Pod's name), so it is maintained whoever scales
the Deployment in: this operator, an HPA or KEDA, or `kubectl scale`. The buckets are coarse so
a busy Pod is patched a few times per job, not once a second.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from finex_operator.planner.model import Observed, Plan, PodLoad

DELETION_COST_ANNOTATION: Final = "controller.kubernetes.io/pod-deletion-cost"
#: Upper bounds (seconds) of the age buckets of a Pod's oldest running job.
AGE_BUCKETS: Final = (10.0, 60.0, 600.0)
#: One more running job outweighs any age bucket.
PER_JOB: Final = len(AGE_BUCKETS) + 2


def pod_of_worker(worker: str, queue: str) -> str | None:
    """The Pod a worker runs in, from its name `<queue>.<host>.<pid>-<suffix>` (the host is the
    Pod; runtime.worker.worker_name)."""
    prefix = f"{queue}."
    if not worker.startswith(prefix) or worker.count(".") < 2:
        return None
    return worker[len(prefix) : worker.rindex(".")] or None


def pod_loads(workers: Iterable[tuple[str, str, float | None]], queue: str) -> dict[str, PodLoad]:
    """PodLoad by Pod from live workers as (name, current job or "", its age in s or None)."""
    busy: dict[str, list[float]] = {}
    for name, job, age in workers:
        pod = pod_of_worker(name, queue)
        if pod is None:
            continue
        ages = busy.setdefault(pod, [])
        if job:
            ages.append(age or 0.0)
    return {pod: PodLoad(len(ages), max(ages, default=0.0)) for pod, ages in busy.items()}


def deletion_cost(load: PodLoad | None) -> int:
    """The cost of deleting a Pod: 0 when idle; more running jobs and older jobs cost more."""
    if load is None or load.busy == 0:
        return 0
    bucket = 1 + sum(1 for bound in AGE_BUCKETS if load.oldest_job_seconds >= bound)
    return load.busy * PER_JOB + bucket


def plan_deletion_costs(obs: Observed, plan: Plan) -> None:
    """Patch the cost of each Pod whose annotation differs from what Redis says it should be."""
    if obs.pod_load is None:
        return  # without Redis nobody knows which Pod is busy: leave the last costs in place
    for q in obs.spec.queue_names:
        for pod in obs.pod_views.get(q, ()):
            if pod.terminating:
                continue
            cost = deletion_cost(obs.pod_load.get(pod.name))
            if pod.deletion_cost != str(cost):
                plan.pod_costs[pod.name] = cost
