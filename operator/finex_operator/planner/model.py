"""What the planner reads (an Observed snapshot) and what it returns (a Plan of actions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from finex_operator.reasons import EventReason
from finex_operator.spec import PoolSpec
from finex_workers.control import QueueState


@dataclass(frozen=True)
class DeploymentView:
    """What the operator reads back from one child Deployment."""

    replicas: int
    ready_replicas: int
    spec_hash: str
    #: The Deployment controller has seen the latest spec (status.observedGeneration >=
    #: metadata.generation), so ready_replicas is about the replicas written last.
    current: bool = True


@dataclass(frozen=True)
class PodView:
    """One Pod of a queue: its name (the workers' host part) and its deletion cost now."""

    name: str
    #: The controller.kubernetes.io/pod-deletion-cost annotation as set, None when absent.
    deletion_cost: str | None = None
    terminating: bool = False
    #: metadata.deletionTimestamp: when its grace period ends (None: not being deleted).
    deletion_deadline: datetime | None = None


@dataclass(frozen=True)
class PodLoad:
    """What a Pod's live workers are doing, from Redis: jobs running and the oldest one's age."""

    busy: int = 0
    oldest_job_seconds: float = 0.0


@dataclass(frozen=True)
class DlqEntry:
    """One DLQ job as the policy sees it."""

    id: str
    retries: int
    failed_at: datetime | None
    #: Quarantined (crashed its worker maxCrashes times): never retried automatically.
    quarantined: bool = False


@dataclass(frozen=True)
class Observed:
    """One consistent-enough snapshot of the world, taken at the start of a reconcile."""

    name: str
    uid: str
    generation: int
    spec: PoolSpec
    now: datetime
    #: The CR's status as stored; the planner parses the parts it reads (status.restart).
    status: Mapping[str, Any] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    deployments: Mapping[str, DeploymentView] = field(default_factory=dict)
    pods: Mapping[str, int] = field(default_factory=dict)
    #: The Pods of each queue, terminating ones included.
    pod_views: Mapping[str, Sequence[PodView]] = field(default_factory=dict)
    #: Busy workers by Pod name, from Redis; None when Redis could not be read.
    pod_load: Mapping[str, PodLoad] | None = None
    #: None when Redis could not be read; redis_error then says why.
    queues: Mapping[str, QueueState] | None = None
    redis_error: str = ""
    dlq: Mapping[str, Sequence[DlqEntry]] = field(default_factory=dict)
    sweep_due: bool = False
    grace_margin: int = 30


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event on the pool, with a reason from finex_operator.reasons."""

    type: Literal["Normal", "Warning"]
    reason: EventReason
    message: str


@dataclass
class Plan:
    """Everything one reconcile should do, in the order the actor does it.

    The planner fills it in concern by concern (restart, pause, DLQ, Deployments, status).
    """

    #: Pods whose controller.kubernetes.io/pod-deletion-cost to set, set before `apply`.
    pod_costs: dict[str, int] = field(default_factory=dict)
    apply: list[dict[str, Any]] = field(default_factory=list)
    #: Deployments to scale (name -> replicas): a removed queue's, to 0 before its deletion.
    scale: dict[str, int] = field(default_factory=dict)
    #: Deployments to delete (a removed queue's, once its Pods are gone).
    delete: list[str] = field(default_factory=list)
    #: (queue, holder) pauses to take and to lift (control.Holder): each party lifts only its own.
    pause: list[tuple[str, str]] = field(default_factory=list)
    resume: list[tuple[str, str]] = field(default_factory=list)
    retry_dlq: dict[str, list[str] | None] = field(default_factory=dict)  # None: the whole DLQ
    sweep: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
