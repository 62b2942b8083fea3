"""The FinexWorkerPool spec as typed, frozen values, parsed from the CR body.

The apiserver already enforced the schema and the CEL rules and filled in defaults, so parsing
here only converts types. The defaults below repeat the CRD's, for bodies built by hand in tests.
"""

from __future__ import annotations

import copy
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


#: An unset drainTimeoutSeconds is the job timeout plus this: a job started just before the
#: pause may run to its timeout, and killing and settling it takes a moment more.
DRAIN_MARGIN_SECONDS = 60


@dataclass(frozen=True)
class PodTemplate:
    """spec.podTemplate: what the worker Pods carry beyond what the operator sets.

    The Kubernetes-typed parts (tolerations, affinity, env, volumes, ...) stay the plain
    mappings the apiserver validated; builders.py copies them into the Deployment.
    """

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    image_pull_secrets: tuple[str, ...] = ()
    service_account_name: str | None = None
    automount_service_account_token: bool = False
    priority_class_name: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] | None = None
    topology_spread_constraints: tuple[Mapping[str, Any], ...] = ()
    env: tuple[Mapping[str, Any], ...] = ()
    env_from: tuple[Mapping[str, Any], ...] = ()
    volumes: tuple[Mapping[str, Any], ...] = ()
    volume_mounts: tuple[Mapping[str, Any], ...] = ()


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
    #: Unset in the CR: job_timeout_seconds + DRAIN_MARGIN_SECONDS (parse_spec works it out).
    drain_timeout_seconds: int = 600 + DRAIN_MARGIN_SECONDS
    on_drain_timeout: str = "Abort"
    #: A restart's Stopping deadline: every target Pod gone (past-grace Pods aside).
    #: Unset in the CR: job_timeout_seconds + DRAIN_MARGIN_SECONDS, so a Proceed restart's Pods,
    #: finishing a job within their grace (job timeout + the grace margin), are waited for.
    stop_timeout_seconds: int = 600 + DRAIN_MARGIN_SECONDS
    #: A restart's Starting deadline: every target Deployment's Pods Ready.
    start_timeout_seconds: int = 600
    pod_template: PodTemplate = PodTemplate()

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


def _items(raw: Any) -> tuple[Mapping[str, Any], ...]:
    return tuple(copy.deepcopy(dict(i)) for i in raw or ())


def parse_pod_template(raw: Mapping[str, Any] | None) -> PodTemplate:
    """spec.podTemplate; deep copies, so an edit of a built Deployment never reaches the spec."""
    raw = raw or {}
    meta = raw.get("metadata") or {}
    affinity = raw.get("affinity")
    return PodTemplate(
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        annotations={str(k): str(v) for k, v in (meta.get("annotations") or {}).items()},
        image_pull_secrets=tuple(str(s["name"]) for s in raw.get("imagePullSecrets") or ()),
        service_account_name=raw.get("serviceAccountName"),
        automount_service_account_token=bool(raw.get("automountServiceAccountToken", False)),
        priority_class_name=raw.get("priorityClassName"),
        node_selector={str(k): str(v) for k, v in (raw.get("nodeSelector") or {}).items()},
        tolerations=_items(raw.get("tolerations")),
        affinity=copy.deepcopy(dict(affinity)) if affinity is not None else None,
        topology_spread_constraints=_items(raw.get("topologySpreadConstraints")),
        env=_items(raw.get("env")),
        env_from=_items(raw.get("envFrom")),
        volumes=_items(raw.get("volumes")),
        volume_mounts=_items(raw.get("volumeMounts")),
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
    job_timeout = int(raw.get("jobTimeoutSeconds", 600))
    return PoolSpec(
        image=str(raw["image"]),
        image_pull_policy=str(raw.get("imagePullPolicy", "IfNotPresent")),
        queues=queues,
        redis_url=_ref(raw["redis"]["urlSecretRef"]),
        database_url=_ref(raw["database"]["urlSecretRef"]),
        connection_budget=int(raw["database"]["connectionBudget"]),
        paused=bool(raw.get("paused", False)),
        resources=dict(raw.get("resources") or {}),
        job_timeout_seconds=job_timeout,
        retry_max=int(retry.get("maxRetries", 3)),
        max_crashes=int(raw.get("maxCrashes", 3)),
        retry_intervals=tuple(int(i) for i in retry.get("intervals", (5, 30, 120))),
        dlq=DlqPolicy(
            auto_retry=bool(dlq.get("autoRetry", False)),
            max_retries=int(dlq.get("maxRetries", 3)),
            backoff_seconds=int(dlq.get("backoffSeconds", 60)),
            max_backoff_seconds=int(dlq.get("maxBackoffSeconds", 3600)),
        ),
        drain_timeout_seconds=int(
            raw.get("drainTimeoutSeconds") or job_timeout + DRAIN_MARGIN_SECONDS
        ),
        on_drain_timeout=str(raw.get("onDrainTimeout", "Abort")),
        stop_timeout_seconds=int(
            raw.get("stopTimeoutSeconds") or job_timeout + DRAIN_MARGIN_SECONDS
        ),
        start_timeout_seconds=int(raw.get("startTimeoutSeconds", 600)),
        pod_template=parse_pod_template(raw.get("podTemplate")),
    )
