"""Every Prometheus metric the fleet exports, defined once (docs/metrics.md lists them).

Two sources, two processes:

- ``QueueCollector`` reads queue state from Redis at scrape time; ``finex exporter`` serves it.
  Nothing is counted in the exporter's memory, so its numbers survive restarts of the exporter
  and of every worker. A scrape costs a few Redis round trips per queue, whatever the number of
  jobs: counts come from LLEN/ZCARD/ZCOUNT and counter hashes, never from walking job lists.
- ``WorkerMetrics`` is what a worker process observes itself: how long each attempt took and how
  it ended. Worker processes are forked by the supervisor, so these live in prometheus-client's
  multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) and the supervisor's metrics child serves the
  sum over all of them.

Both take ``registry=`` so tests can read a fresh ``CollectorRegistry`` with ``get_sample_value``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rq.registry import FinishedJobRegistry, StartedJobRegistry

from finex_workers import control
from finex_workers.control.recovery import CRASH_KINDS
from finex_workers.core.keys import config_error_key, stats_key
from finex_workers.infra import rqkeys
from finex_workers.infra.redisconn import text

#: Buckets for job durations: our jobs run from milliseconds (one growth row) to minutes (a big
#: matrix batch); StuckJobs starts caring at 600s.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

#: The states of ``finex_queue_jobs``, in the runbook's order.
JOB_STATES = ("waiting", "active", "delayed", "failed", "completed")


@dataclass(frozen=True)
class QueueSnapshot:
    """Everything the exporter reports about one queue, read from Redis in one go."""

    state: control.QueueState
    #: Finished jobs whose result RQ still keeps (result_ttl); what rq-dashboard calls finished.
    finished_retained: int
    #: Lifetime attempts that raised (retried or dead-lettered), from finex:stats:<queue>.
    failed_total: int
    #: Seconds since the oldest running execution started; 0 when nothing runs.
    oldest_active_age: float
    #: A worker of the queue reports a configuration error (PostgreSQL refused its login).
    config_error: bool = False
    #: Lifetime quarantined jobs by the kind of their last crash (control.recovery.CRASH_KINDS).
    quarantined: Mapping[str, int] = field(default_factory=dict)
    #: Queued ids a worker found without a job hash and dropped, from finex:stats:<queue>.
    dropped_total: int = 0


def snapshot(conn: redis.Redis, queue: str, now: float | None = None) -> QueueSnapshot:
    """Read one queue's numbers. Cost is O(live workers), never O(jobs).

    The oldest running job: RQ scores its StartedJobRegistry by heartbeat expiry, not start time,
    so ZRANGE 0 0 there is not the oldest job. But only live entries (score >= now) are running,
    and each worker runs one job at a time, so ZRANGEBYSCORE now..+inf returns at most one entry
    per live worker; their execution hashes hold ``created_at``. That is the same order of work
    as listing the live workers (which ``queue_state`` already does), needs no extra bookkeeping
    in the worker, and cannot go stale when a worker is killed: a dead worker's entry stops
    being live when its heartbeat expires.
    """
    now = time.time() if now is None else now
    state = control.queue_state(conn, queue)
    pipe = conn.pipeline(transaction=False)
    pipe.hget(stats_key(queue), "failed")
    pipe.zcount(FinishedJobRegistry(queue, conn).key, now, "+inf")
    pipe.zrangebyscore(StartedJobRegistry(queue, conn).key, *rqkeys.active_bounds(now))
    pipe.exists(config_error_key(queue))
    pipe.hmget(stats_key(queue), ["dropped", *(f"quarantined:{kind}" for kind in CRASH_KINDS)])
    failed_total, finished, live, config_error, (dropped, *quarantined) = pipe.execute()
    oldest = 0.0
    if live:
        pipe = conn.pipeline(transaction=False)
        for composite in live:
            pipe.hget(rqkeys.execution_key(text(composite)), "created_at")
        starts = [float(text(v)) for v in pipe.execute() if v is not None]
        if starts:
            oldest = max(0.0, now - min(starts))
    return QueueSnapshot(
        state=state,
        finished_retained=int(finished),
        failed_total=int(failed_total or 0),
        oldest_active_age=oldest,
        config_error=bool(config_error),
        quarantined={k: int(n) for k, n in zip(CRASH_KINDS, quarantined, strict=True) if n},
        dropped_total=int(dropped or 0),
    )


class QueueCollector(Collector):
    """A custom collector: every scrape reads Redis, so counters live in Redis, not here.

    A Redis error propagates, so the scrape fails and Prometheus records ``up == 0`` for the
    exporter: an exporter that cannot see Redis is as useless as one that is down, and
    ExporterDown's runbook section covers both.
    """

    def __init__(self, connect: Callable[[], redis.Redis], queues: Sequence[str]) -> None:
        self._connect = connect
        self._conn: redis.Redis | None = None
        self.queues = list(queues)

    def _redis(self) -> redis.Redis:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def describe(self) -> Iterable[Metric]:
        # Without describe(), register() would call collect() (and hit Redis) at registration.
        return list(self._families())

    def _families(self) -> tuple[GaugeMetricFamily | CounterMetricFamily, ...]:
        label = ["queue"]
        return (
            GaugeMetricFamily(
                "finex_queue_jobs",
                "Jobs per queue by state: waiting (in the queue), active (running, live "
                "heartbeat), delayed (scheduled retries and deferred), failed (in the DLQ), "
                "completed (finished, result still kept).",
                labels=["queue", "state"],
            ),
            GaugeMetricFamily("finex_queue_paused", "1 while the queue is paused.", labels=label),
            GaugeMetricFamily(
                "finex_queue_paused_seconds",
                "Seconds since the queue's oldest pause began, whoever holds it (the CLI, a "
                "restart, spec.paused); 0 when it is not paused. QueuePausedTooLong fires on it.",
                labels=label,
            ),
            GaugeMetricFamily(
                "finex_queue_demand",
                "Jobs that need a worker now or soon: waiting + active + delayed. What the "
                "operator autoscales on; the target for an HPA or a KEDA prometheus trigger.",
                labels=label,
            ),
            GaugeMetricFamily(
                "finex_queue_workers",
                "Live workers of the queue: registered and listening on their command channel "
                "(one killed a moment ago is registered until its heartbeat expires, and not "
                "counted).",
                labels=label,
            ),
            GaugeMetricFamily(
                "finex_queue_oldest_active_job_age_seconds",
                "Seconds the longest-running active job has been running; 0 when none runs.",
                labels=label,
            ),
            CounterMetricFamily(
                "finex_jobs_completed",
                "Jobs that completed, counted in Redis by the workers (survives restarts).",
                labels=label,
            ),
            CounterMetricFamily(
                "finex_jobs_failed",
                "Job attempts that failed (retried or dead-lettered), counted in Redis.",
                labels=label,
            ),
            CounterMetricFamily(
                "finex_jobs_outage_returns",
                "Jobs returned to their queue with attempts intact because PostgreSQL or Redis "
                "was unreachable, counted in Redis (an outage, not a job failure).",
                labels=label,
            ),
            CounterMetricFamily(
                "finex_jobs_quarantined",
                "Jobs quarantined in the DLQ after crashing their worker FINEX_MAX_CRASHES "
                "times, by the kind of the last crash (signal, exit, oom, timeout, lost, died); "
                "never retried automatically. Counted in Redis.",
                labels=["queue", "reason"],
            ),
            GaugeMetricFamily(
                "finex_queue_config_error",
                "1 while a worker of the queue reports a configuration error: PostgreSQL "
                "answers and refuses its login or a startup parameter; the worker takes no job.",
                labels=label,
            ),
            CounterMetricFamily(
                "finex_jobs_dropped",
                "Queued ids a worker found without a job hash and dropped: work that never ran "
                "(JobsDropped), counted in Redis.",
                labels=label,
            ),
        )

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        (
            jobs,
            paused,
            paused_age,
            demand,
            workers,
            oldest,
            completed,
            failed,
            outages,
            quarantined,
            refused,
            dropped,
        ) = families
        conn = self._redis()
        for queue in self.queues:
            snap = snapshot(conn, queue)
            s = snap.state
            counts = {
                "waiting": s.waiting,
                "active": s.active,
                "delayed": s.delayed,
                "failed": s.failed,
                "completed": snap.finished_retained,
            }
            for state_name in JOB_STATES:
                jobs.add_metric([queue, state_name], counts[state_name])
            paused.add_metric([queue], 1.0 if s.paused else 0.0)
            paused_age.add_metric([queue], s.paused_seconds)
            demand.add_metric([queue], s.demand)
            workers.add_metric([queue], s.workers)
            oldest.add_metric([queue], snap.oldest_active_age)
            completed.add_metric([queue], s.completed)
            failed.add_metric([queue], snap.failed_total)
            outages.add_metric([queue], s.outages)
            refused.add_metric([queue], 1.0 if snap.config_error else 0.0)
            # Every kind, 0 included: a series that starts at 1 would hide its first increase.
            for kind in CRASH_KINDS:
                quarantined.add_metric([queue, kind], snap.quarantined.get(kind, 0))
            dropped.add_metric([queue], snap.dropped_total)
        return list(families)


def build_info(registry: CollectorRegistry) -> Gauge:
    """``finex_build_info{version, rq_version, python_version} 1``: which build is running.

    Prometheus's convention for build metadata (``prometheus_build_info``, ``go_info``): a gauge
    that is always 1, with the facts as labels, so a query can join it onto other series or
    count the versions in a fleet during a rollout.
    """
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import rq

    try:
        finex_version = version("finex-workers")
    except PackageNotFoundError:  # run from a source tree without installing
        finex_version = "unknown"
    gauge = Gauge(
        "finex_build_info",
        "Always 1; the labels say which finex-workers build (and RQ, Python) is running.",
        ["version", "rq_version", "python_version"],
        registry=registry,
    )
    gauge.labels(finex_version, rq.__version__, platform.python_version()).set(1)
    return gauge


def exporter_registry(
    connect: Callable[[], redis.Redis], queues: Sequence[str]
) -> CollectorRegistry:
    """The queue collector and the build info (no process metrics: one exporter, any pod)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(QueueCollector(connect, queues))
    build_info(registry)
    return registry


class WorkerMetrics:
    """What a worker process observes about its own jobs.

    Counted where the job ran, so a histogram of durations is possible (Redis counters hold no
    distribution). In multiprocess mode the values sit in files under PROMETHEUS_MULTIPROC_DIR
    and outlive the process that wrote them, so a crashed worker's counts are not lost.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.job_duration = Histogram(
            "finex_job_duration_seconds",
            "Wall time of one job attempt in a worker, by queue and outcome.",
            ["queue", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.jobs = Counter(
            "finex_worker_jobs",
            "Job attempts finished by worker processes, by queue and outcome "
            "(completed or failed).",
            ["queue", "outcome"],
            registry=registry,
        )
        self.outages = Counter(
            "finex_worker_outages",
            "Jobs a worker returned to their queue, attempts intact, because PostgreSQL or "
            "Redis was unreachable; by queue and service.",
            ["queue", "service"],
            registry=registry,
        )

    def outage(self, queue: str, service: str) -> None:
        self.outages.labels(queue, service).inc()

    def observe(self, queue: str, *, ok: bool, seconds: float) -> None:
        outcome = "completed" if ok else "failed"
        self.job_duration.labels(queue, outcome).observe(max(0.0, seconds))
        self.jobs.labels(queue, outcome).inc()


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name a registry exposes (with _total, _bucket ...), for the rules check."""
    return {sample.name for family in registry.collect() for sample in family.samples}
