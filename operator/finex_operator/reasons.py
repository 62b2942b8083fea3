"""Every reason the operator reports, named once (like cert-manager's constants.go).

Kubernetes API conventions want a reason to be a short CamelCase word that a program can match
on, so each one is written here and nowhere else: the planner and the reconcile post Events and
build Conditions with these names, and tests/unit/test_reasons.py checks the spelling, that no
value is used twice, and that docs/operator.md lists exactly these.

While a restart runs, the `Restarting` condition is True with the phase's name as its reason
(`planner.restart_status.Phase`: Pausing, Draining, ...); those names are not repeated here.
"""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class EventReason(StrEnum):
    """The reason of an Event posted on a pool."""

    #: a new finex.io/restart value started a restart (Pausing).
    RESTART_STARTED = "RestartStarted"
    #: the target queues are paused; waiting for their active jobs (Draining).
    RESTART_DRAINING = "RestartDraining"
    #: the queues drained (or the drain timed out with Proceed); scaling to 0 (Stopping).
    RESTART_STOPPING = "RestartStopping"
    #: every target Pod is gone; scaling back up (Starting).
    RESTART_STARTING = "RestartStarting"
    #: every target Pod is Ready; resuming the queues (Resuming).
    RESTART_RESUMING = "RestartResuming"
    #: a restart finished with every phase done (Warning-free Done).
    RESTART_SUCCEEDED = "RestartSucceeded"
    #: an aborted restart finished: its drain or a phase's deadline ran out, or
    #: finex.io/abort-restart asked for it; the queues it paused are resumed (a Warning).
    RESTART_ABORTED = "RestartAborted"
    #: a finex.io/restart value names a queue the pool does not have (a Warning).
    RESTART_REFUSED = "RestartRefused"
    #: a new finex.io/restart value arrived while a restart runs; it starts after this one.
    RESTART_QUEUED = "RestartQueued"
    #: Draining reached drainTimeoutSeconds with jobs still active (a Warning).
    DRAIN_TIMED_OUT = "DrainTimedOut"
    #: Pausing, Stopping or Starting passed its deadline: the restart is aborted (a Warning).
    RESTART_TIMED_OUT = "RestartTimedOut"
    #: a new finex.io/abort-restart value aborted the running restart (a Warning).
    RESTART_ABORT_REQUESTED = "RestartAbortRequested"
    #: a queue left spec.queues: its Deployment is scaled to 0, then deleted.
    QUEUE_REMOVED = "QueueRemoved"
    #: a removed queue's Deployment had no Pod left and was deleted.
    DEPLOYMENT_DELETED = "DeploymentDeleted"
    #: spec.paused is true and some queues were not paused yet.
    PAUSED = "Paused"
    #: spec.paused went back to false: the queues the operator paused were resumed.
    RESUMED = "Resumed"
    #: the DLQ policy found jobs whose backoff has passed and retries them.
    DLQ_AUTO_RETRY = "DLQAutoRetry"
    #: after a DLQ retry was carried out: how many jobs went back to their queue.
    DLQ_RETRIED = "DLQRetried"
    #: a new finex.io/retry-dlq value forces a retry of whole DLQs, parked jobs included.
    DLQ_RETRY_REQUESTED = "DLQRetryRequested"
    #: a finex.io/retry-dlq value names a queue the pool does not have (a Warning).
    DLQ_RETRY_REFUSED = "DLQRetryRefused"
    #: more DLQ jobs reached dlq.maxRetries and are parked (a Warning naming them).
    DLQ_JOBS_PARKED = "DLQJobsParked"
    #: a queue's Deployment was created or patched to what the spec says.
    DEPLOYMENT_APPLIED = "DeploymentApplied"
    #: a Deployment of the queue's name exists and its controller is not this pool: the
    #: operator leaves it alone (a Warning, once per message).
    DEPLOYMENT_NOT_OWNED = "DeploymentNotOwned"
    #: the apiserver refused the Deployment built from the spec (a podTemplate value the CRD
    #: schema cannot check, say); the message is the apiserver's (a Warning, once per message).
    DEPLOYMENT_REFUSED = "DeploymentRefused"
    #: the stuck-job sweep requeued or dead-lettered jobs of dead workers (a Warning).
    STUCK_JOBS_RECOVERED = "StuckJobsRecovered"
    #: a worker container of the pool terminated abnormally (OOMKilled, a signal, a non-zero
    #: exit); its jobs were recovered at once, as crashes (a Warning; podcrash).
    WORKER_CRASH_RECOVERED = "WorkerCrashRecovered"
    #: jobs crashed their worker maxCrashes times and were quarantined in the DLQ (a Warning).
    JOBS_QUARANTINED = "JobsQuarantined"
    #: a finex.io/ annotation the operator does not know appeared on the pool (a Warning, once).
    UNKNOWN_ANNOTATION = "UnknownAnnotation"
    #: the autoscaler raised a queue's replicas (its demand wants more); the message says why.
    SCALED_UP = "ScaledUp"
    #: the autoscaler lowered a queue's replicas after the stabilization window; the Pods it
    #: removes were marked with the lowest pod-deletion-cost (idle first) just before.
    SCALED_DOWN = "ScaledDown"


@unique
class ConditionReason(StrEnum):
    """The reason of a condition in status.conditions (besides the phase names, see above)."""

    #: Ready is False while a restart runs.
    RESTARTING = "Restarting"
    #: Ready is False: some Deployment has fewer Ready replicas than it should.
    DEPLOYMENTS_NOT_READY = "DeploymentsNotReady"
    #: Ready is True: every queue's Pods are Ready.
    ALL_QUEUES_READY = "AllQueuesReady"
    #: Restarting is False and the pool has never restarted.
    NO_RESTART = "NoRestart"
    #: Restarting is False and the last restart succeeded.
    RESTART_SUCCEEDED = "RestartSucceeded"
    #: Restarting is False, and Degraded is True, while the last restart is one that was
    #: aborted (a deadline, its drain, or finex.io/abort-restart) until a restart succeeds.
    RESTART_ABORTED = "RestartAborted"
    #: Restarting is False and the last restart value was refused.
    RESTART_REFUSED = "RestartRefused"
    #: Degraded is True: Redis could not be read (Secret, key or connection); see the message.
    REDIS_UNAVAILABLE = "RedisUnavailable"
    #: Degraded is True: some DLQ jobs are parked after dlq.maxRetries.
    JOBS_PARKED = "JobsParked"
    #: Degraded is False.
    AS_EXPECTED = "AsExpected"


@unique
class ScaleReason(StrEnum):
    """status.queues[].scaleReason: why the queue has the replicas it has."""

    #: no autoscale block: spec.queues[].replicas.
    FIXED = "FixedReplicas"
    #: autoscale.mode External: an HPA or KEDA owns spec.replicas.
    EXTERNAL = "ExternalAutoscaler"
    #: demand wanted more replicas, so they were added now.
    SCALED_UP = "ScaledUp"
    #: demand wanted fewer replicas for the whole stabilization window.
    SCALED_DOWN = "ScaledDown"
    #: demand wants fewer replicas; waiting out the stabilization window.
    STABILIZING = "ScaleDownStabilizing"
    #: demand wants what the queue has.
    STEADY = "DemandMet"
    #: Redis could not be read, so the last decision holds.
    NO_DEMAND_READING = "DemandUnknown"
