"""The FinexWorkerPool spec as typed, frozen values, parsed from the CR body.

The apiserver already enforced the schema and the CEL rules and filled in defaults, so parsing
here only converts types. The defaults below repeat the CRD's, for bodies built by hand in tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from finex_workers.core.names import QUEUE_NAMES


@dataclass(frozen=True)
class SecretRef:
    """A key of a Secret in the pool's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class Autoscale:
    """spec.queues[].autoscale: who decides the replica count, and how the operator would.

    Operator: the operator sizes the Deployment from the queue's demand (waiting + active +
    delayed), between minReplicas and the queue's maxReplicas. External: an HPA or a KEDA
    ScaledObject owns spec.replicas, and the operator never writes it (it still marks which
    Pods to delete first).
    """

    mode: str = "Operator"
    min_replicas: int = 0
    jobs_per_replica: int = 5
    scale_down_stabilization_seconds: int = 60

    @property
    def external(self) -> bool:
        return self.mode == "External"


@dataclass(frozen=True)
class QueueSpec:
    """One queue's Deployment: Pods, and worker processes per Pod."""

    name: str
    replicas: int = 1
    concurrency: int = 5
    max_replicas: int | None = None
    #: None: a fixed replica count (spec.queues[].replicas).
    autoscale: Autoscale | None = None


@dataclass(frozen=True)
class DlqPolicy:
    """Automatic DLQ retries: backoffSeconds doubles per retry of the same job, capped."""

    auto_retry: bool = False
    max_retries: int = 3
    backoff_seconds: int = 60
    max_backoff_seconds: int = 3600

    def backoff(self, retries_so_far: int) -> float:
        """Seconds a job must sit in the DLQ before its next automatic retry."""
        return float(
            min(self.backoff_seconds * (2 ** min(retries_so_far, 20)), self.max_backoff_seconds)
        )


@dataclass(frozen=True)
class PoolSpec:
    """What the pool should be. Credentials are only ever Secret references."""

    image: str
    queues: tuple[QueueSpec, ...]
    redis_url: SecretRef
    database_url: SecretRef
    connection_budget: int
    image_pull_policy: str = "IfNotPresent"
    paused: bool = False
    resources: Mapping[str, Any] = field(default_factory=dict)
    job_timeout_seconds: int = 600
    retry_max: int = 3
    #: Crashes after which a job is quarantined (FINEX_MAX_CRASHES; 0: crash accounting off).
    max_crashes: int = 3
    retry_intervals: tuple[int, ...] = (5, 30, 120)
    dlq: DlqPolicy = DlqPolicy()
    drain_timeout_seconds: int = 300
    on_drain_timeout: str = "Abort"
    #: A restart's Stopping deadline: every target Pod gone (past-grace Pods aside).
    stop_timeout_seconds: int = 300
    #: A restart's Starting deadline: every target Deployment's Pods Ready.
    start_timeout_seconds: int = 600

    @property
    def queue_names(self) -> tuple[str, ...]:
        """The pool's queues in the canonical order (matrix, growth, probability)."""
        names = {q.name for q in self.queues}
        return tuple(q for q in QUEUE_NAMES if q in names)

    def queue(self, name: str) -> QueueSpec:
        for q in self.queues:
            if q.name == name:
                return q
        raise KeyError(name)


def _ref(raw: Mapping[str, Any]) -> SecretRef:
    return SecretRef(name=str(raw["name"]), key=str(raw["key"]))


def _autoscale(raw: Mapping[str, Any] | None) -> Autoscale | None:
    if raw is None:
        return None
    return Autoscale(
        mode=str(raw.get("mode", "Operator")),
        min_replicas=int(raw.get("minReplicas", 0)),
        jobs_per_replica=int(raw.get("jobsPerReplica", 5)),
        scale_down_stabilization_seconds=int(raw.get("scaleDownStabilizationSeconds", 60)),
    )


def parse_spec(raw: Mapping[str, Any]) -> PoolSpec:
    """A PoolSpec from `.spec` of the CR (a plain mapping)."""
    queues = tuple(
        QueueSpec(
            name=str(q["name"]),
            replicas=int(q.get("replicas", 1)),
            concurrency=int(q.get("concurrency", 5)),
            max_replicas=int(q["maxReplicas"]) if q.get("maxReplicas") is not None else None,
            autoscale=_autoscale(q.get("autoscale")),
        )
        for q in raw.get("queues", [])
    )
    retry = raw.get("retry") or {}
    dlq = raw.get("dlq") or {}
    return PoolSpec(
        image=str(raw["image"]),
        image_pull_policy=str(raw.get("imagePullPolicy", "IfNotPresent")),
        queues=queues,
        redis_url=_ref(raw["redis"]["urlSecretRef"]),
        database_url=_ref(raw["database"]["urlSecretRef"]),
        connection_budget=int(raw["database"]["connectionBudget"]),
        paused=bool(raw.get("paused", False)),
        resources=dict(raw.get("resources") or {}),
        job_timeout_seconds=int(raw.get("jobTimeoutSeconds", 600)),
        retry_max=int(retry.get("maxRetries", 3)),
        max_crashes=int(raw.get("maxCrashes", 3)),
        retry_intervals=tuple(int(i) for i in retry.get("intervals", (5, 30, 120))),
        dlq=DlqPolicy(
            auto_retry=bool(dlq.get("autoRetry", False)),
            max_retries=int(dlq.get("maxRetries", 3)),
            backoff_seconds=int(dlq.get("backoffSeconds", 60)),
            max_backoff_seconds=int(dlq.get("maxBackoffSeconds", 3600)),
        ),
        drain_timeout_seconds=int(raw.get("drainTimeoutSeconds", 300)),
        on_drain_timeout=str(raw.get("onDrainTimeout", "Abort")),
        stop_timeout_seconds=int(raw.get("stopTimeoutSeconds", 300)),
        start_timeout_seconds=int(raw.get("startTimeoutSeconds", 600)),
    )
