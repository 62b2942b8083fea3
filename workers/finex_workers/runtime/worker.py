"""The worker process: an RQ SimpleWorker with per-queue pause, in-job heartbeats and a DLQ rule.

Why SimpleWorker: our supervisor already runs one forked process per unit of concurrency, so a
second fork per job (what ``rq worker`` does) only adds latency. Jobs still go through RQ's own
code paths and structures, so RQ's tools and rq-dashboard see them as usual.

What we add:
- Per-queue pause. RQ's ``rq suspend`` stops every queue; ours is a ``finex:paused:<queue>`` key.
  A paused worker takes no new job. A worker blocked in BLMOVE when the pause is set may still
  receive a job enqueued after it; it checks the flag after the pop and puts the job back at the
  head of the queue, in one script with removing it from RQ's intermediate list, so nothing is
  lost.
- Heartbeats while a job runs, from a thread, because SimpleWorker has no monitoring parent.
  Without them a long job would look abandoned to ``clean-stuck-jobs``.
- Bad payloads (PayloadError) are not retried: they go straight to the DLQ with their message.
- Lifetime completed/failed counters per queue in Redis (``finex:stats:<queue>``), updated in the
  same pipeline as RQ's own bookkeeping.
- Optional job metrics (duration, outcome) per attempt, for the supervisor's /metrics.
- SIGTERM is RQ's warm shutdown: the running job finishes and commits, then the process exits.
- The worker listens on its command channel before it registers, so it never shows up as live
  while a ``finex workers stop`` (RQ's ``shutdown`` command over pub/sub) would still be lost.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import redis
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.utils import now as utcnow
from rq.worker import SimpleWorker, WorkerStatus

from finex_workers.control import scripts
from finex_workers.core.errors import PayloadError
from finex_workers.core.keys import paused_key, stats_key

if TYPE_CHECKING:
    from finex_workers.observability.metrics import WorkerMetrics

#: How often a paused worker re-checks the pause flag, in seconds.
PAUSE_POLL_SECONDS = 0.2
#: Longest a worker blocks waiting for a job before re-checking stop/pause state, in seconds.
DEQUEUE_TIMEOUT = 5
#: Longest a starting worker waits for Redis to confirm its command-channel subscription.
SUBSCRIBE_TIMEOUT = 10.0


class FinexWorker(SimpleWorker):
    """Serves exactly one queue (one Deployment per queue in Kubernetes)."""

    def __init__(self, *args: Any, metrics: WorkerMetrics | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        if len(self.queues) != 1:
            raise ValueError("a FinexWorker serves exactly one queue")
        self._heartbeat_stop = threading.Event()

    @property
    def queue_name(self) -> str:
        return str(self.queues[0].name)

    def register_birth(self) -> None:
        # RQ registers the worker and only then subscribes to its command channel, so a command
        # published in between reaches nobody. Subscribe first: once listed, a worker hears it.
        self.subscribe()
        super().register_birth()  # type: ignore[no-untyped-call]

    def subscribe(self) -> None:
        if self.pubsub_thread is not None:  # already done by register_birth
            return
        super().subscribe()  # type: ignore[no-untyped-call]
        # The pub/sub connection sends SUBSCRIBE without waiting for the reply; wait until Redis
        # counts the subscriber, so the registration that follows is never ahead of it.
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
        channel = self.pubsub_channel_name
        while not self.connection.pubsub_numsub(channel)[0][1]:
            if time.monotonic() > deadline:
                self.log.warning(
                    "Worker %s: Redis has not confirmed the subscription to %s after %.0fs; "
                    "a stop command sent now may be missed",
                    self.name,
                    channel,
                    SUBSCRIBE_TIMEOUT,
                )
                return
            time.sleep(0.01)

    @property
    def dequeue_timeout(self) -> int:
        return DEQUEUE_TIMEOUT

    # -- pause -----------------------------------------------------------------------------

    def is_paused(self) -> bool:
        return bool(self.connection.exists(paused_key(self.queue_name)))

    def _wait_while_paused(self) -> None:
        if not self.is_paused():
            return
        self.set_state(WorkerStatus.SUSPENDED)
        self.log.info("Worker %s: queue %s is paused; waiting", self.name, self.queue_name)
        while self.is_paused():
            if self._stop_requested:
                return
            self.heartbeat()
            time.sleep(PAUSE_POLL_SECONDS)
        self.log.info("Worker %s: queue %s resumed", self.name, self.queue_name)
        self.set_state(WorkerStatus.IDLE)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        # The flag is checked once per job, after the pop: that check is what makes the pause
        # safe for a worker that was blocked in BLMOVE when it was set. Only after seeing the
        # queue paused does the worker wait (polling) before popping again.
        while True:
            if self._stop_requested:
                return None
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            if result is None:
                return None
            job, queue = result
            if not self.is_paused():
                return result
            self.log.info(
                "Worker %s: %s paused after pop; returning job %s", self.name, queue.name, job.id
            )
            scripts.put_back(self.connection, queue.name, job.id)
            self._wait_while_paused()

    # -- heartbeats during a job --------------------------------------------------------------

    def _beat(self, job: Job, execution: Execution) -> None:
        interval = max(1.0, min(self.job_monitoring_interval, self.worker_ttl / 3))
        while not self._heartbeat_stop.wait(interval):
            try:
                self.maintain_heartbeats(job, execution)
            except redis.RedisError as exc:
                self.log.warning("Worker %s: heartbeat failed: %s", self.name, exc)

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        self._heartbeat_stop.clear()
        beat = threading.Thread(
            target=self._beat, args=(job, execution), daemon=True, name="finex-heartbeat"
        )
        beat.start()
        started = time.monotonic()
        try:
            ok = self.perform_job(job, queue, execution)
        finally:
            self._heartbeat_stop.set()
            beat.join()
        if self.metrics is not None:
            self.metrics.observe(self.queue_name, ok=ok, seconds=time.monotonic() - started)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        # RQ beats several times per job (HSET + 2x EXPIRE each, unpipelined). A beat within the
        # last third of the TTL is recent enough: skipping it saves ~9 round trips per job.
        # Beats with an explicit TTL or inside a pipeline always go through.
        if timeout is None and pipeline is None and self.last_heartbeat is not None:
            age = (utcnow() - self.last_heartbeat).total_seconds()
            if age < self.worker_ttl / 3:
                return
        super().heartbeat(timeout, pipeline)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # Entries in the started registry expire this long after the last beat: a dead worker's
        # job becomes visibly abandoned within about worker_ttl, not job timeout + 60s.
        return int(self.worker_ttl)

    # -- failures and counters ------------------------------------------------------------------

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        exc = exc_info[1] if len(exc_info) > 1 else None
        if isinstance(exc, PayloadError):
            job.retries_left = 0
            self.log.error(
                "Worker %s: job %s has a bad payload (not retried): %s", self.name, job.id, exc
            )
        super().handle_exception(job, *exc_info)

    def increment_successful_job_count(self, pipeline: Any = None) -> None:
        super().increment_successful_job_count(pipeline)
        (pipeline or self.connection).hincrby(stats_key(self.queue_name), "completed", 1)

    def increment_failed_job_count(self, pipeline: Any = None) -> None:
        super().increment_failed_job_count(pipeline)
        (pipeline or self.connection).hincrby(stats_key(self.queue_name), "failed", 1)


def worker_name(queue: str, pid: int) -> str:
    """Readable and unique: the queue, the host (the pod name in Kubernetes) and the pid."""
    return f"{queue}.{socket.gethostname()}.{pid}"
