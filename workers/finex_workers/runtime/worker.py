"""The worker process: an RQ SimpleWorker whose per-job path costs two Redis round trips.

Why SimpleWorker: our supervisor already runs one forked process per unit of concurrency, so a
second fork per job (what ``rq worker`` does) only adds latency. Jobs stay in RQ's own
structures (queue list, job hash, execution hash, started/finished/failed registries, results
stream), so ``rq info``, rq-dashboard and RQ's own maintenance see them as usual.

The hot path, per job:

1. **claim** (one round trip, ``control/lua/claim.lua``): checks ``rq suspend`` and our
   per-queue pause, pops the next id, reads the job hash, and writes what RQ writes when it
   starts a job (execution, started registry, worker state, job status). Pop and start are one
   atomic step, so a job is never popped but not started, and a paused queue is never popped.
2. the job runs in this process, under RQ's death penalty (``job.timeout``);
3. **finish** (one round trip, ``control/lua/finish.lua``): what RQ's own success bookkeeping
   writes (job status, result stream, finished registry, job expiry, execution cleanup, worker
   counters and state) plus our ``finex:stats`` counter, atomically; the result's fields come
   from RQ's own ``Result.serialize``.

Everything off the hot path stays RQ's code: failures and retries (``handle_job_failure``),
jobs with dependents, callbacks, repeats, rate limits, webhooks or a result TTL of 0,
registration, commands and maintenance. An idle worker waits with ``BLMOVE q q`` (head to
head: it wakes when the queue has a job and takes nothing), then claims.

Outages are not job failures: when a job raises because PostgreSQL or Redis is unreachable
(``infra.reachability.outage_of``: for PostgreSQL, a new connection with the jobs' own parameters
gets no answer), the worker puts it back at the tail of its queue with its attempts intact
(``control.return_for_outage``, counted as an outage in ``finex:stats``; at most
``outage_returns_max`` times per job, then it is an ordinary failure), then takes no job until
both services answer, retrying with a capped backoff. A PostgreSQL that answers and refuses the
login or a parameter is a configuration error: the worker says so in one line, flags it for the
exporter (``finex:config-error:<queue>``, the WorkerConfigError alert) and takes no job until the
login works. A lost Redis connection between jobs does the same instead of ending the process.
A job's own errors keep RQ's retry policy and reach the DLQ as before. A job that overruns its
timeout and never returns to Python is ended by the supervisor (``runtime.backstop``).

Heartbeats: one long-lived thread, woken per job, beats only while a job runs longer than the
monitoring interval, so a long job stays visibly alive to ``clean-stuck-jobs`` and a short one
costs no beat. Bad payloads (PayloadError) are not retried: they go straight to the DLQ. SIGTERM
is RQ's warm shutdown: the running job finishes and commits, then the process exits. The worker
listens on its command channel before it registers, so a ``finex workers stop`` is never lost,
and its listener ends as soon as Redis confirms the unsubscribe (``runtime.command_channel``), so a
stopping worker exits at once.

rq's contract holds (docs/architecture.md, "FinexWorker and rq's worker contract"): a success
callback that raises, or a job that calls ``sys.exit()``, fails the job and the worker goes on;
``work()`` takes rq's arguments and runs again on the same instance; ``find_by_key`` and
``all()`` build views; rq's stop-job and stop-execution commands stop the running job. The
deliberate differences (one queue, the heartbeat TTL, short Redis timeouts) are clear errors or
documented values.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import redis
from rq import worker_registration
from rq.callbacks import execute_stopped_callback
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT, RQ_KEY_PREFIX
from rq.exceptions import ShutDownImminentException, StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus, Retry
from rq.queue import Queue
from rq.results import Result
from rq.suspension import WORKERS_SUSPENDED
from rq.timeouts import JobTimeoutException
from rq.utils import current_timestamp, utcformat
from rq.utils import now as utcnow
from rq.worker import DequeueStrategy, SimpleWorker, WorkerStatus

from finex_workers.control import scripts
from finex_workers.control.recovery import CAPPED, clean_stuck_jobs, return_for_outage
from finex_workers.core.errors import PayloadError, ServiceRefusedError, ServiceUnreachableError
from finex_workers.core.keys import claim_token_key, config_error_key, paused_key, stats_key
from finex_workers.core.settings import Settings
from finex_workers.infra import rqkeys
from finex_workers.infra.processes import pid_namespace
from finex_workers.infra.reachability import check_postgres, outage_of, redis_unreachable
from finex_workers.infra.redisconn import text
from finex_workers.runtime.backstop import BackstopDeathPenalty
from finex_workers.runtime.command_channel import (
    CommandListener,
    only_main_thread_gets_stop_signals,
)
from finex_workers.runtime.redis_wait import delays

if TYPE_CHECKING:
    from finex_workers.observability.metrics import WorkerMetrics

#: How often a paused (or suspended) worker re-checks the flag, in seconds.
PAUSE_POLL_SECONDS = 0.2
#: Longest a worker blocks waiting for a job before re-checking stop/pause state, in seconds.
DEQUEUE_TIMEOUT = 5
#: Longest a starting worker waits for Redis to confirm its command-channel subscription.
SUBSCRIBE_TIMEOUT = 10.0
#: Longest a stopping worker waits for its command listener to read Redis's confirmation of the
#: unsubscribe (normally well under a millisecond; the listener's daemon thread dies with it).
UNSUBSCRIBE_TIMEOUT = 5.0
#: Backoff while PostgreSQL or Redis is unreachable, seconds (first, cap): the cap bounds how
#: late a worker resumes after the service is back.
OUTAGE_BACKOFF = (0.5, 5.0)
#: Redis failures that mean "not reachable now", not a bug.
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
#: Seconds between checks while PostgreSQL refuses the worker's login (a configuration error);
#: the flag the exporter reads lives three checks.
REFUSED_RECHECK = 10.0
#: Shortest worker_ttl a FinexWorker accepts: a running job's started-registry entry expires
#: worker_ttl after its last beat (rq: job timeout + 60 s), and beats come every worker_ttl / 3.
MIN_WORKER_TTL = 5
#: Delivered by the command-channel thread to the main thread to stop the running job
#: (rq's stop-job and stop-execution). The worker process reserves it.
STOP_JOB_SIGNAL = signal.SIGUSR1
#: What a stopped job's result records (rq's forking Worker says "work-horse terminated").
STOPPED_BY_REQUEST = "Job stopped by user (stop-job or stop-execution command)"


class JobStopped(BaseException):
    """Raised in a running job by a stop-job or stop-execution command.

    A BaseException, so a job's ``except Exception`` does not swallow it; like rq's job timeout
    it reaches the job's Python code, not a call blocked in C until that call returns.
    """


class ColdShutdown(SystemExit):
    """rq's cold shutdown (a second SIGINT or SIGTERM), told apart from a job's sys.exit()."""


class _Beater(threading.Thread):
    """One thread for the worker's life: beats for the running job every `interval` seconds."""

    def __init__(self, worker: FinexWorker, interval: float) -> None:
        super().__init__(daemon=True, name="finex-heartbeat")
        self.worker = worker
        self.interval = interval
        self._wake = threading.Event()
        self._current: tuple[Job, Execution] | None = None
        self._done = False

    def begin(self, job: Job, execution: Execution) -> None:
        self._current = (job, execution)
        self._wake.set()

    def end(self) -> None:
        self._current = None
        self._wake.set()

    def stop(self) -> None:
        self._done = True
        self._wake.set()

    def run(self) -> None:
        only_main_thread_gets_stop_signals()
        while not self._done:
            self._wake.wait()
            self._wake.clear()
            current = self._current
            if current is None:
                continue
            # A job runs: beat until begin/end/stop wakes the thread (the next job, or none).
            while not self._wake.wait(self.interval):
                try:
                    self.worker.maintain_heartbeats(*current)
                except redis.RedisError as exc:
                    self.worker.log.warning(
                        "Worker %s: heartbeat failed: %s", self.worker.name, exc
                    )


class FinexWorker(SimpleWorker):
    """Serves exactly one queue (one Deployment per queue in Kubernetes)."""

    death_penalty_class = BackstopDeathPenalty

    def __init__(
        self,
        *args: Any,
        metrics: WorkerMetrics | None = None,
        database_url: str | None = None,
        outage_returns_max: int = 10,
        max_crashes: int = Settings.max_crashes,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        #: Checked with Redis before the worker resumes after an outage (None: Redis only); the
        #: URL the jobs connect with (Settings.worker_database_url), parameters included.
        self.database_url = database_url
        #: Outage returns one job may have before an outage costs it an attempt.
        self.outage_returns_max = outage_returns_max
        #: Crashes that quarantine a job, for the sweep in this worker's maintenance
        #: (Settings.max_crashes, FINEX_MAX_CRASHES; 0: no crash accounting).
        self.max_crashes = max_crashes
        #: The configuration error this worker reported (its one line), or None.
        self.refused: str | None = None
        #: Jobs this process returned to their queue because of an outage.
        self.outages = 0
        # rq's find_by_key and all() build views (prepare_for_work=False) from a worker's
        # record, queues and all; only a worker that will work must fit our contract.
        if kwargs.get("prepare_for_work", True):
            self._check_workable()
        # Bound once: redis-py hashes a script's source each time one is registered.
        self._claim_script = scripts.script(self.connection, "claim")
        self._finish_script = scripts.script(self.connection, "finish")
        self._own_script = scripts.script(self.connection, "own")
        self._commands: CommandListener | None = None
        self._beater = self._new_beater()
        #: The thread that runs work(), where a stop command interrupts the running job.
        self._main_thread: int | None = None
        #: The job id whose function runs right now, and the one whose function has returned
        #: (or raised) and is being recorded: a stop command stops the first, not the second.
        self._performing: str | None = None
        self._performed: str | None = None
        #: Whether finish.lua recorded the last job, worker state included (else rq's code did).
        self._recorded_by_finish = False
        #: When the queue was last seen empty without a job since (for max_idle_time).
        self._idle_since: float | None = None

    @property
    def queue_name(self) -> str:
        return str(self.queues[0].name)

    # -- start-up --------------------------------------------------------------------------

    def register_birth(self) -> None:
        # RQ registers the worker and only then subscribes to its command channel, so a command
        # published in between reaches nobody. Subscribe first: once listed, a worker hears it.
        self.subscribe()
        super().register_birth()  # type: ignore[no-untyped-call]
        # Where its pid means something: the sweep judges "pid gone" only from there.
        self.connection.hset(self.key, "finex_pidns", pid_namespace())

    def subscribe(self) -> None:
        if self._commands is not None:  # already done by register_birth
            return
        # Our listener, not rq's: rq's can keep a stopping worker alive 60 s (command_channel).
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self._commands = CommandListener(
            self.connection, self.pubsub_channel_name, self.handle_payload, self.log
        )
        self._commands.start()
        self.pubsub = self._commands.pubsub
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

    def unsubscribe(self) -> None:
        if self._commands is None:
            return
        channel = self.pubsub_channel_name
        self.log.info("Worker %s: unsubscribing from channel %s", self.name, channel)
        if not self._commands.stop(UNSUBSCRIBE_TIMEOUT):
            self.log.warning(
                "Worker %s: the command listener had not ended %.0fs after unsubscribing; "
                "exiting without it",
                self.name,
                UNSUBSCRIBE_TIMEOUT,
            )
        self._commands = None

    @property
    def dequeue_timeout(self) -> int:
        # rq blocks worker_ttl - 15 s (405 s by default) and sets the socket timeout 10 s
        # longer. We block at most DEQUEUE_TIMEOUT, so a Redis that stops answering is noticed
        # within 15 s (the socket timeout, rq's + 10 kept), and at most worker_ttl / 3, so an
        # idle worker's heartbeat is never older than 2/3 of worker_ttl (docs/architecture.md).
        return min(DEQUEUE_TIMEOUT, max(1, int(self.worker_ttl) // 3))

    def is_paused(self) -> bool:
        return bool(self.connection.exists(paused_key(self.queue_name)))

    # -- the loop ----------------------------------------------------------------------------

    def work(  # noqa: PLR0912, PLR0917 - rq's signature, positional order included
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
        max_jobs: int | None = None,
        max_idle_time: int | None = None,
        with_scheduler: bool = False,
        dequeue_strategy: DequeueStrategy = DequeueStrategy.DEFAULT,
    ) -> bool:
        """Claim, run and finish jobs until stopped (or, with burst, until the queue is empty).

        rq's arguments, with rq's meaning: with_scheduler runs rq's scheduler beside the worker
        (it competes for the same per-queue lock as the supervisor's); every dequeue_strategy
        is the same order with one queue.
        """
        self._prepare_for_work(dequeue_strategy)
        self.bootstrap(logging_level, date_format, log_format)
        if with_scheduler:
            self._start_scheduler(burst, logging_level, date_format, log_format)
        self._install_signal_handlers()  # type: ignore[no-untyped-call]
        self._beater.start()
        completed = 0
        try:
            while not self._stop_requested:
                try:
                    if self.should_run_maintenance_tasks:
                        self.run_maintenance_tasks()  # type: ignore[no-untyped-call]
                    claimed = self._claim_past_dropped()
                    if claimed == "empty":
                        if burst:
                            self.log.info("Worker %s: done, quitting", self.name)
                            break
                        block = self._idle_block(max_idle_time)
                        if block is None:
                            self.log.info(
                                "Worker %s: idle for %s seconds, quitting", self.name, max_idle_time
                            )
                            break
                        self._wait_for_work(block)
                        continue
                    if claimed in ("paused", "suspended"):
                        if burst:  # nothing will run until someone resumes: don't wait for it
                            self.log.info("Worker %s: queue %s, quitting", self.name, claimed)
                            break
                        self._wait_while(claimed)
                        continue
                    if isinstance(claimed, tuple):
                        self._idle_since = None
                        self._run(*claimed)
                        completed += 1
                        if max_jobs is not None and completed >= max_jobs:
                            break
                except REDIS_DOWN as exc:
                    self._state = WorkerStatus.IDLE
                    self.log.error("Worker %s: lost Redis (%s)", self.name, exc)
                    self._await_services()
        except StopRequested:
            pass
        finally:
            self._beater.stop()
            try:
                self.teardown()  # type: ignore[no-untyped-call]
            except REDIS_DOWN as exc:  # stopping while Redis is away: its key expires
                self.log.error("Worker %s: could not deregister (%s)", self.name, exc)
        return bool(completed)

    # -- outages ---------------------------------------------------------------------------

    def _unreachable(self) -> str | None:
        """Why the worker cannot work now (Redis or PostgreSQL down), or None."""
        try:
            self.connection.ping()
        except REDIS_DOWN as exc:
            return str(redis_unreachable("(REDIS_URL)", exc))
        if self.database_url:
            try:
                check_postgres(self.database_url)
            except ServiceUnreachableError as exc:
                self._report_refusal(exc if isinstance(exc, ServiceRefusedError) else None)
                return str(exc)
            self._report_refusal(None)
        return None

    def _report_refusal(self, exc: ServiceRefusedError | None) -> None:
        """Flag a configuration error for the exporter (and say it once), or lift the flag."""
        key = config_error_key(self.queue_name)
        if exc is None:
            if self.refused is not None:
                self.connection.delete(key)
                self.log.info("Worker %s: PostgreSQL accepts the login again", self.name)
                self.refused = None
            return
        self.connection.set(key, str(exc), ex=int(REFUSED_RECHECK * 3))
        if self.refused != str(exc):
            self.log.error(
                "Worker %s: configuration error, taking no job until it is fixed: %s",
                self.name,
                exc,
            )
            self.refused = str(exc)

    def _await_services(self) -> None:
        """Take no job until Redis and PostgreSQL answer, retrying with a capped backoff."""
        backoff = delays(*OUTAGE_BACKOFF)
        attempts = 0
        while not self._stop_requested:
            problem = self._unreachable()
            if problem is None:
                break
            attempts += 1
            delay = max(next(backoff), REFUSED_RECHECK if self.refused else 0.0)
            self.log.warning(
                "Worker %s: %s; taking no job, next check in %.1fs (attempt %d)",
                self.name,
                problem,
                delay,
                attempts,
            )
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self._stop_requested:
                time.sleep(0.1)
        if attempts and not self._stop_requested:
            self.log.info("Worker %s: services answer again; taking jobs", self.name)

    def _return_for_outage(self, job: Job, execution: Execution, service: str) -> bool:
        """Put the job back with its attempts intact, as soon as Redis lets us; False if it
        was returned too often already (nothing changed: the caller fails it as usual)."""
        while True:
            try:
                returned = return_for_outage(
                    self.connection,
                    job,
                    execution.id,
                    self.executions_key,
                    service,
                    most=self.outage_returns_max,
                )
            except REDIS_DOWN:
                if self._stop_requested:  # the stuck-job sweep recovers it
                    return True
                self._await_services()
                continue
            if returned == CAPPED:
                self.log.warning(
                    "Worker %s: %s was unreachable; job %s went back %d times already, so "
                    "this counts as a failure",
                    self.name,
                    service,
                    job.id,
                    self.outage_returns_max,
                )
                return False
            self.outages += 1
            if self.metrics is not None:
                self.metrics.outage(self.queue_name, service)
            self.executions.pop(execution.id, None)
            self.log.warning(
                "Worker %s: %s was unreachable; job %s %s",
                self.name,
                service,
                job.id,
                "went back to its queue, attempts intact"
                if returned
                else "had already been recovered by a sweep",
            )
            return True

    def _with_redis(self, step: Any, *args: Any) -> None:
        """Run a bookkeeping step that needs Redis; if Redis is away, wait and run it again."""
        while True:
            try:
                step(*args)
                return
            except REDIS_DOWN as exc:
                if self._stop_requested:
                    raise
                self.log.error("Worker %s: lost Redis (%s) while recording a job", self.name, exc)
                self._await_services()

    def _claim_past_dropped(self) -> str | tuple[Job, Queue, Execution, bool]:
        """Claim; an id dropped (missing or duplicate) is followed by the next, at once: a
        burst worker does not stop at it, nor an idle one wait a dequeue timeout."""
        while (claimed := self._claim()) in ("missing", "duplicate"):
            pass
        return claimed

    def _claim(self) -> str | tuple[Job, Queue, Execution, bool]:
        """One round trip: the next job, started; or why there is none ('empty', 'paused', ...)."""
        queue = self.queues[0]
        execution_id = uuid4().hex
        started = utcnow()
        ttl = self.get_heartbeat_ttl_for(queue)
        # Busy before the claim: a SIGTERM arriving while the claim runs asks for a warm stop
        # instead of interrupting a job that Redis has already marked started.
        self._state = WorkerStatus.BUSY
        reply = self._claim_script(
            keys=[
                queue.key,
                paused_key(self.queue_name),
                WORKERS_SUSPENDED,
                queue.started_job_registry.key,
                self.key,
                self.executions_key,
                stats_key(self.queue_name),
                claim_token_key(execution_id),
            ],
            args=[
                Job.redis_job_namespace_prefix,
                f"{RQ_KEY_PREFIX}:execution:",
                rqkeys.executions_key(""),
                execution_id,
                self.name,
                started.timestamp(),
                utcformat(started),
                ttl,
                self.worker_ttl + 60,
            ],
        )
        kind = "empty" if reply is None else text(reply[0])
        if kind != "job":
            self._state = WorkerStatus.IDLE
            if kind == "missing":
                self.log.error(
                    "Worker %s: job %s has no data; dropped (counted as dropped in %s)",
                    self.name,
                    text(reply[1]),
                    stats_key(self.queue_name),
                )
            elif kind == "duplicate":
                self.log.warning(
                    "Worker %s: job %s was in the queue twice; skipped the copy",
                    self.name,
                    text(reply[1]),
                )
            return kind
        _, job_id, has_dependents, flat = reply
        job = self.job_class(text(job_id), connection=self.connection, serializer=self.serializer)
        job.restore(dict(zip(flat[::2], flat[1::2], strict=True)))
        job.worker_name = self.name
        job.started_at = job.last_heartbeat = started
        job._status = JobStatus.STARTED
        execution = Execution(execution_id, job.id, self.connection, worker_name=self.name)
        execution.created_at = execution.last_heartbeat = started
        execution._job = job
        self.executions[execution.id] = execution
        self.last_heartbeat = started
        return job, queue, execution, bool(has_dependents)

    def get_heartbeat_ttl_for(self, queue: Queue) -> int:
        # Entries in the started registry expire this long after the last beat: a dead worker's
        # job becomes visibly abandoned within about worker_ttl, not job timeout + 60s.
        return int(self.worker_ttl)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.get_heartbeat_ttl_for(self.queues[0])

    def _wait_for_work(self, timeout: int | None = None) -> None:
        """Block until the queue has a job (BLMOVE head to head takes nothing), or time out."""
        if self._stop_requested:  # a stop during the claim (busy then) only set the flag
            return
        self.heartbeat()
        self.set_state(WorkerStatus.IDLE)
        key = self.queues[0].key
        self.connection.blmove(key, key, timeout or self.dequeue_timeout, "LEFT", "LEFT")

    def _wait_while(self, why: str) -> None:
        self.set_state(WorkerStatus.SUSPENDED)
        self.log.info("Worker %s: queue %s is %s; waiting", self.name, self.queue_name, why)
        while not self._stop_requested:
            self.heartbeat()
            time.sleep(PAUSE_POLL_SECONDS)
            if why == "paused" and not self.is_paused():
                break
            if why == "suspended" and not self.connection.exists(WORKERS_SUSPENDED):
                break
        self.log.info("Worker %s: queue %s resumed", self.name, self.queue_name)
        self.set_state(WorkerStatus.IDLE)

    def _run(self, job: Job, queue: Queue, execution: Execution, has_dependents: bool) -> None:
        started = time.monotonic()
        self._beater.begin(job, execution)
        try:
            ok, outage, failure = self._perform_and_record(job, queue, execution, has_dependents)
        finally:
            self._beater.end()
            self._drop_late_stop()
            self._state = WorkerStatus.IDLE
        if not self._recorded_by_finish:
            # rq's own recording (a failure, a retry, a stop, a success with extras) leaves the
            # worker's hash 'busy'; rq's execute_job then writes 'idle', and so do we (finish.lua
            # does it in its one round trip on the hot path).
            self._with_redis(self.set_state, WorkerStatus.IDLE)
        seconds = time.monotonic() - started
        if outage is not None:
            if self._return_for_outage(job, execution, outage):
                self._await_services()
                return
            self._with_redis(self._finalize_failure, job, queue, execution, failure)
        if ok:
            self.log.info(
                "Worker %s: %s: %s OK in %.1f ms", self.name, queue.name, job.id, seconds * 1e3
            )
        if self.metrics is not None:
            self.metrics.observe(self.queue_name, ok=ok, seconds=seconds)

    def _perform_and_record(
        self, job: Job, queue: Queue, execution: Execution, has_dependents: bool
    ) -> tuple[bool, str | None, Any]:
        """Run the job and record its outcome, unless it met an outage.

        Returns (succeeded, the outage or None, the failure's exc_info when it met an outage).
        """
        self._recorded_by_finish = False
        try:
            timeout = job.timeout or self.queue_class.DEFAULT_TIMEOUT
            with self.death_penalty_class(timeout, JobTimeoutException, job_id=job.id):
                value = self._perform(job)
        except JobStopped:
            self._with_redis(self._finalize_stopped, job, queue, execution)
            return False, None, None
        except Exception as exc:
            outage = outage_of(exc, self.database_url)
            if outage is not None:
                return False, outage, sys.exc_info()
            self._with_redis(self._finalize_failure, job, queue, execution, sys.exc_info())
            return False, None, None
        except BaseException as exc:  # a job's sys.exit() or KeyboardInterrupt: as rq, fails
            if self._is_shutdown(exc):
                raise
            self._with_redis(self._finalize_failure, job, queue, execution, sys.exc_info())
            return False, None, None
        if self._plain(job, value, has_dependents):
            self._with_redis(self._finish, job, queue, execution, value)
            return True, None, None
        return self._finalize_success_or_failure(job, queue, execution, value), None, None

    def _plain(self, job: Job, value: object, has_dependents: bool) -> bool:
        """A success that needs none of RQ's extras, so it can finish in one round trip."""
        return not (
            has_dependents
            or job.get_result_ttl(self.default_result_ttl) == 0
            or isinstance(value, Retry)
            or job._success_callback_name
            or job.repeats_left
            or job.has_rate_limit
            or job.webhooks
        )

    def _finish(self, job: Job, queue: Queue, execution: Execution, value: object) -> None:
        """RQ's success bookkeeping for a plain job, in one script (control/lua/finish.lua)."""
        job.ended_at = utcnow()
        job._result = value
        job._status = JobStatus.FINISHED
        ttl = job.get_result_ttl(self.default_result_ttl)
        result = Result(
            job.id,
            Result.Type.SUCCESSFUL,
            self.connection,
            return_value=value,
            worker_name=self.name,
            serializer=job.serializer,
            execution_id=execution.id,
            execution_started_at=execution.created_at,
            execution_ended_at=job.ended_at,
        )
        fields = [part for pair in result.serialize().items() for part in pair]
        # As FinishedJobRegistry.add scores it: expiry time, or +inf for a result kept forever.
        score: int | str = ttl if ttl < 0 else current_timestamp() + ttl
        worked = (job.ended_at - execution.created_at).total_seconds()
        recorded = self._finish_script(
            keys=[
                job.key,
                Result.get_key(job.id),
                queue.finished_job_registry.key,
                execution.key,
                queue.started_job_registry.key,
                rqkeys.executions_key(job.id),
                self.key,
                self.executions_key,
                stats_key(self.queue_name),
                job.dependents_key,
                job.dependencies_key,
            ],
            args=[
                job.id,
                utcformat(job.ended_at),
                ttl,
                "+inf" if score == -1 else score,
                execution.composite_key,
                execution.id,
                worked,
                *fields,
            ],
        )
        if recorded == -1:  # a dependent was enqueued while it ran: RQ's path releases it
            self._finalize_success(job, queue, execution, value)
            return
        # Recorded (1), or settled already (0: a re-sent script after a lost reply, or a sweep
        # took the job back); finish.lua wrote the worker's idle state in the first case.
        self._recorded_by_finish = recorded == 1
        self.executions.pop(execution.id, None)

    def _owns(self, job: Job, queue: Queue, execution: Execution) -> bool:
        """Whether this worker still owns the execution (a sweep may have taken the job back),
        with its lease renewed for the round trip that records the outcome (lua/own.lua)."""
        owned = self._own_script(
            keys=[queue.started_job_registry.key, self.key],
            args=[execution.composite_key, self.get_heartbeat_ttl_for(queue)],
        )
        if not owned:
            self.executions.pop(execution.id, None)
            self.log.warning(
                "Worker %s: job %s was taken back by the stuck-job sweep while it ran; "
                "its outcome here is not recorded",
                self.name,
                job.id,
            )
        return bool(owned)

    def _finalize_failure(
        self, job: Job, queue: Queue, execution: Execution, exc_info: Any
    ) -> None:
        # RQ's failure path (retry, DLQ) writes in a pipeline without checking ownership.
        if self._owns(job, queue, execution):
            super()._finalize_failure(job, queue, execution, exc_info)

    def _finalize_success(self, job: Job, queue: Queue, execution: Execution, value: Any) -> None:
        # RQ's success path (dependents, callbacks, retries by return value), same check.
        if self._owns(job, queue, execution):
            super()._finalize_success(job, queue, execution, value)

    def clean_registries(self) -> None:
        """RQ's maintenance, with the finex sweep as the one abandoned-job handler.

        RQ's StartedJobRegistry.cleanup (and its intermediate-list cleanup) would race the
        sweep with other semantics and without its atomic claim; the sweep
        (``control.clean_stuck_jobs``) handles both. The other registries keep RQ's cleanup.
        """
        for queue in self.queues:
            if not queue.acquire_maintenance_lock():
                continue
            self.log.info("Worker %s: cleaning registries for queue %s", self.name, queue.name)
            report = clean_stuck_jobs(self.connection, queue.name, max_crashes=self.max_crashes)
            for job_id in report.requeued + report.dead_lettered:
                self.log.warning("Worker %s: %s: %s", self.name, job_id, report.reasons[job_id])
            for registry in (
                queue.finished_job_registry,
                queue.failed_job_registry,
                queue.deferred_job_registry,
                queue.ready_job_registry,  # dependents moved to ready but not yet enqueued
            ):
                registry.cleanup()
            worker_registration.clean_worker_registry(queue)
            queue.release_maintenance_lock()
        self.last_cleaned_at = utcnow()  # type: ignore[assignment]

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        # RQ beats the worker hash with HSET + 2x EXPIRE, unpipelined. The claim script already
        # refreshes it with every job, so an idle or paused worker beats only when a third of
        # its TTL has passed. Beats with an explicit TTL or inside a pipeline always go through.
        if timeout is None and pipeline is None and self.last_heartbeat is not None:
            age = (utcnow() - self.last_heartbeat).total_seconds()
            if age < self.worker_ttl / 3:
                return
        super().heartbeat(timeout, pipeline)

    # -- rq's contract (docs/architecture.md, "FinexWorker and rq's worker contract") -----------

    def _new_beater(self) -> _Beater:
        return _Beater(self, max(1.0, min(self.job_monitoring_interval, self.worker_ttl / 3)))

    def _check_workable(self) -> None:
        """Where we differ from rq on purpose, a clear error instead of a crash later."""
        if len(self.queues) != 1:
            raise ValueError(
                f"a FinexWorker serves exactly one queue (one Deployment per queue), not "
                f"{len(self.queues)}: {', '.join(self.queue_names()) or 'none'}. rq's Worker "
                "serves several; start one FinexWorker per queue (docs/architecture.md)"
            )
        if self.worker_ttl < MIN_WORKER_TTL:
            raise ValueError(
                f"worker_ttl={self.worker_ttl} is too short for a FinexWorker: it must be at "
                f"least {MIN_WORKER_TTL} s, because a running job's started-registry entry "
                "expires worker_ttl after the worker's last beat (rq: job timeout + 60 s) and "
                "the worker beats every worker_ttl / 3 (docs/architecture.md)"
            )

    def _prepare_for_work(self, dequeue_strategy: DequeueStrategy) -> None:
        """What each work() call needs afresh, so one instance can work() again, as rq's can."""
        self._check_workable()
        self._dequeue_strategy = dequeue_strategy  # one queue: every strategy is one order
        if self._beater.ident is not None:  # an earlier work() started (and stopped) it
            self._beater = self._new_beater()
            # That work()'s teardown unsubscribed (and ended its listener); subscribe() must
            # run again.
            self._commands = None
            self.pubsub_thread = None
            self.pubsub = None
        self._idle_since = None
        self._main_thread = threading.get_ident()
        signal.signal(STOP_JOB_SIGNAL, self._on_stop_signal)

    def _idle_block(self, max_idle_time: int | None) -> int | None:
        """Seconds to wait for a job now; None once the worker has been idle max_idle_time."""
        if max_idle_time is None:
            return self.dequeue_timeout
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        left = max_idle_time - (now - self._idle_since)
        if left <= 0:
            return None
        return min(self.dequeue_timeout, math.ceil(left))

    @staticmethod
    def _is_shutdown(exc: BaseException) -> bool:
        """The worker's own shutdown, not the job's: it ends the process, the job is swept."""
        return isinstance(exc, ColdShutdown | ShutDownImminentException)

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        try:
            super().request_force_stop(signum, frame)
        except SystemExit:
            raise ColdShutdown() from None

    def _finalize_success_or_failure(
        self, job: Job, queue: Queue, execution: Execution, value: object
    ) -> bool:
        """rq's success path; if it raises (a success callback that raises), the job fails
        instead, as in rq, and the worker carries on. True when recorded as a success."""
        try:
            self._with_redis(self._finalize_success, job, queue, execution, value)
        except BaseException as exc:
            if self._is_shutdown(exc) or isinstance(exc, REDIS_DOWN):
                raise  # REDIS_DOWN escapes _with_redis only when stopping
            self._with_redis(self._finalize_failure, job, queue, execution, sys.exc_info())
            return False
        return True

    # stop-job and stop-execution: rq's command thread checks that this worker runs the job,
    # sets _stopped_job_id and calls kill_horse(). A SimpleWorker has no horse, so we interrupt
    # the main thread instead, which raises JobStopped in the job if it still runs.

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self._main_thread is None:
            self.log.warning("Worker %s: not working; stop command ignored", self.name)
            return
        signal.pthread_kill(self._main_thread, STOP_JOB_SIGNAL)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        stopped = self._stopped_job_id
        if stopped is not None and stopped == self._performing:
            raise JobStopped(f"job {stopped} stopped by request")
        if stopped is not None and stopped == self._performed:
            self._drop_late_stop()  # before the failure path reads it: a failure stays a failure
        # Otherwise claimed but not yet running: _perform stops it before it runs.

    def _perform(self, job: Job) -> Any:
        """job.perform(), stoppable by rq's stop commands while it runs."""
        self._performing = job.id
        try:
            if self._stopped_job_id == job.id:  # the stop came between claim and now
                raise JobStopped(f"job {job.id} stopped by request before it ran")
            return job.perform()
        finally:
            self._performing = None
            self._performed = job.id

    def _finalize_stopped(self, job: Job, queue: Queue, execution: Execution) -> None:
        """What rq's forking Worker records for a job stopped on request: its stopped callback
        runs (errors logged), and the job is STOPPED in the FailedJobRegistry, not retried."""
        self.log.warning("Worker %s: job %s stopped on request", self.name, job.id)
        self._performed = None  # a second stop command now must not undo this one
        job.ended_at = utcnow()
        try:
            execute_stopped_callback(job, self.death_penalty_class)
        except Exception:
            self.log.exception("Worker %s: stopped callback of job %s raised", self.name, job.id)
        self._stopped_job_id = job.id  # handle_job_failure reads it: STOPPED, never retried
        self.handle_job_failure(
            job,
            queue=queue,
            started_job_registry=queue.started_job_registry,
            exc_string=STOPPED_BY_REQUEST,
            execution=execution,
        )

    def _drop_late_stop(self) -> None:
        """A stop that came once the job's function had returned (or raised) changes nothing;
        forget it, so it cannot stop a later run of the same job id."""
        self._performed = None
        if self._stopped_job_id is not None:
            self.log.warning(
                "Worker %s: stop command for job %s came after it had returned; ignored",
                self.name,
                self._stopped_job_id,
            )
            self._stopped_job_id = None

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
    """Readable and unique: the queue, the host (the pod name in Kubernetes), and the pid with a
    random suffix: `<queue>.<host>.<pid>-<suffix>`. The suffix matters in a container: when the
    kubelet restarts one, its pids start again from 1 under the same hostname, and RQ refuses
    to register a name whose dead owner's key has not expired yet.

    FINEX_WORKER_HOST overrides the host part, for workers that stand in for a Pod they do not
    run in (the e2e tests beside kwok's Pods); the operator reads the Pod from this name.
    """
    host = os.environ.get("FINEX_WORKER_HOST") or socket.gethostname()
    return f"{queue}.{host}.{pid}-{uuid4().hex[:6]}"
