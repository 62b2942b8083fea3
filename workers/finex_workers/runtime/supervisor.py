"""``finex workers start``: N worker processes per queue, from the concurrency settings.

The supervisor forks its children before anything opens a Redis or PostgreSQL connection, and each
child opens its own. It forwards SIGTERM/SIGINT once to every child (a warm shutdown: running jobs
finish and commit) and waits for them. A child that dies unexpectedly is restarted with
backoff; its abandoned job, if any, is recovered the moment the supervisor reaps it, as a crash
with the child's exit code or signal as the reason (``control.clean_stuck_jobs`` with
``dead_worker``), and the 5 s sweep recovers whatever that missed (Redis down at that moment,
workers of another host), so a crash is repaired without an operator. A child that exits
cleanly, because ``finex workers stop`` asked it to, is not restarted, unless
``--respawn-stopped`` (what ``make dev`` runs, so ``finex workers restart`` gets fresh workers
on one machine). The supervisor exits when its last
child has; in Kubernetes the kubelet then restarts the container.

While Redis does not answer, the supervisor forks no worker: it waits with a capped backoff and
logs one line per attempt (``redis_wait``), before the first start and before restarting
workers that died, so a dead Redis is a few lines a minute, not a crash loop.

With ``--metrics-port`` the supervisor points PROMETHEUS_MULTIPROC_DIR at a directory before it
forks anything, so every worker writes its job metrics there, and one more child serves their sum
on /metrics. A child, not a thread of the supervisor: a thread running in the parent at fork
time is a classic source of deadlocked children (and of inherited listening sockets).

A job that never returns to Python (stuck in C code, out of reach of RQ's SIGALRM timeout) is
ended here: each worker writes its job's hard deadline, timeout + a margin, into memory shared
with the supervisor, who SIGKILLs a worker past it (``runtime.backstop``) and then recovers the
job at once, as a crash of kind ``timeout``.

In Kubernetes the supervisor is PID 1 of the worker container (exec-form entrypoint), so the
kubelet's SIGTERM reaches it directly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

from finex_workers.core.settings import Settings
from finex_workers.runtime import early_stop
from finex_workers.runtime.backstop import Deadlines
from finex_workers.runtime.redis_wait import wait_for_redis

log = logging.getLogger("finex.supervisor")

#: Wait before restarting a crashed child; doubles per crash in a row, capped.
RESTART_BACKOFF = (0.5, 30.0)
#: How often the supervisor sweeps its queues for abandoned jobs, in seconds. A sweep costs a
#: few round trips per queue; an abandoned job waits at most this long (plus worker_ttl when it
#: ran on another host).
SWEEP_INTERVAL = 5.0
#: The signals that stop the supervisor (a warm shutdown of every child).
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
#: While stopping, the supervisor says every this many seconds which children it waits for (an
#: idle worker exits at once; a busy one after its job).
STOP_REPORT_EVERY = 5.0
#: A child that ran this long before it died starts a fresh backoff: an old crash (a Redis
#: restart an hour ago) must not add 30 s to the next restart.
STABLE_SECONDS = 60.0


@dataclass
class _Slot:
    queue: str
    index: int
    #: "worker" runs jobs; "scheduler" moves due retries (backoff) back onto their queues;
    #: "metrics" serves the workers' job metrics.
    kind: str = "worker"
    pid: int = 0
    crashes: int = 0
    restart_at: float = 0.0
    started_at: float = 0.0
    done: bool = False
    #: This worker's cell in the supervisor's Deadlines (workers only).
    cell: int = -1
    #: The supervisor SIGKILLed it for overrunning its job's deadline (the crash's reason).
    overdue: bool = False


@dataclass
class Supervisor:
    """Owns the worker processes of one `finex workers start` invocation."""

    settings: Settings
    queues: Sequence[str]
    burst: bool = False
    slots: list[_Slot] = field(default_factory=list)
    stopping: bool = False
    #: Serve the workers' job metrics on this port (None: workers record no metrics).
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"  # noqa: S104 - a pod's metrics port is scraped from outside
    #: Start a fresh worker when one exits cleanly (after a stop command).
    respawn_stopped: bool = False
    _metrics_dir_created: str | None = None
    _deadlines: Deadlines | None = None

    def run(self) -> int:
        """Start every child, supervise until all have exited, return the exit code."""
        self.settings.check_budget(self.queues)
        if self.metrics_port is not None:
            self._prepare_metrics_dir()
        try:
            return self._supervise()
        finally:
            if self._metrics_dir_created:
                shutil.rmtree(self._metrics_dir_created, ignore_errors=True)

    def _prepare_metrics_dir(self) -> None:
        """Point PROMETHEUS_MULTIPROC_DIR at an empty directory before anything imports
        prometheus_client: it picks its value class at import, and children inherit that."""
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if path:
            os.makedirs(path, exist_ok=True)
            for name in os.listdir(path):  # files of a previous run would add to our counts
                if name.endswith(".db"):
                    os.unlink(os.path.join(path, name))
        else:
            path = tempfile.mkdtemp(prefix="finex-metrics-")
            self._metrics_dir_created = path
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = path

    def _take_signals(self) -> None:
        """Install the stop handlers, and honour a SIGTERM that came while the process started
        (a container's PID 1 would otherwise have lost it: runtime.early_stop)."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        early = early_stop.received()
        if early is not None:
            log.info("%s during start-up: no worker will be started", signal.Signals(early).name)
            self.stopping = True

    def _redis_ready(self) -> bool:
        """Wait (capped backoff, a line per attempt) until Redis answers; False if stopping."""
        if self.stopping:
            return False
        return wait_for_redis(self.settings.redis_url, log, stopping=lambda: self.stopping)

    def _supervise(self) -> int:
        self._take_signals()
        if self.metrics_port is not None:
            # First, so the Pod's probes answer while Redis is still awaited: unready, alive.
            server = _Slot("metrics", 0, kind="metrics")
            self.slots.append(server)
            self._spawn(server)
        if not self._redis_ready():
            log.info("stopped while starting; no worker was started")
            self._stop_and_reap()
            return 0
        self._check_redis_settings()
        self._deadlines = Deadlines(self.settings.connections_needed(self.queues))
        for queue in self.queues:
            for index in range(self.settings.concurrency[queue]):
                slot = _Slot(queue, index, cell=sum(1 for s in self.slots if s.kind == "worker"))
                self.slots.append(slot)
                self._spawn(slot)
        if not self.burst:
            # One scheduler per supervisor; RQ's locks keep one active per queue fleet-wide.
            scheduler = _Slot(",".join(self.queues), 0, kind="scheduler")
            self.slots.append(scheduler)
            self._spawn(scheduler)
        total = sum(1 for s in self.slots if s.kind == "worker")
        log.info(
            "started %d worker processes: %s",
            total,
            ", ".join(f"{q}={self.settings.concurrency[q]}" for q in self.queues),
        )
        next_sweep = time.monotonic() + SWEEP_INTERVAL
        next_report = 0.0
        while any(not s.done for s in self.slots):
            self._reap()
            self._end_overdue_jobs()
            if self.stopping:
                next_report = self._report_stopping(next_report)
            if not self.stopping and all(s.done for s in self.slots if s.kind == "worker"):
                log.info("every worker was stopped; stopping the scheduler")
                self._stop_children()
            now = time.monotonic()
            if not self.stopping:
                due = [s for s in self.slots if not s.done and s.pid == 0 and now >= s.restart_at]
                if due and not self._redis_ready():
                    continue
                for slot in due:
                    self._spawn(slot)
                if now >= next_sweep and not self.burst:
                    self._sweep()
                    next_sweep = now + SWEEP_INTERVAL
            time.sleep(0.1)
        log.info("all worker processes exited")
        return 0

    def _end_overdue_jobs(self) -> None:
        """SIGKILL each worker whose job ran past its timeout + margin without returning."""
        if self._deadlines is None:
            return
        now = time.monotonic()
        for slot in self.slots:
            deadline = self._deadlines.get(slot.cell) if slot.cell >= 0 else 0.0
            if slot.pid and 0 < deadline < now:
                log.error(
                    "worker %d (%s): its job ran past its timeout and did not return to Python; "
                    "ending the process (SIGKILL); its job is recovered when it is reaped",
                    slot.pid,
                    slot.queue,
                )
                self._deadlines.set(slot.cell, 0.0)
                slot.overdue = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGKILL)

    def _report_stopping(self, next_report: float) -> float:
        """Log the children still running, every STOP_REPORT_EVERY s; returns the next time."""
        now = time.monotonic()
        if not next_report:
            return now + STOP_REPORT_EVERY
        if now < next_report:
            return next_report
        left = [f"{s.kind} {s.pid} ({s.queue})" for s in self.slots if s.pid and not s.done]
        if left:
            log.info(
                "waiting for %d process(es) to finish their job and exit: %s",
                len(left),
                ", ".join(left),
            )
        return now + STOP_REPORT_EVERY

    def _stop_and_reap(self) -> None:
        """Stop the children started so far (the metrics child) and wait for them."""
        self._stop_children()
        for slot in self.slots:
            if slot.pid:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(slot.pid, 0)

    def _check_redis_settings(self) -> None:
        """Warn once at start when Redis may evict keys (a queued job would vanish)."""
        from finex_workers.infra.redisconn import redis_from_url, warn_if_evicting

        conn = redis_from_url(self.settings.redis_url)
        try:
            warn_if_evicting(conn, log)
        finally:
            conn.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            log.info("already stopping; waiting for running jobs to finish")
            return
        log.info("%s: warm shutdown, running jobs finish first", signal.Signals(signum).name)
        self._stop_children()

    def _stop_children(self) -> None:
        self.stopping = True
        for slot in self.slots:
            if slot.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGTERM)
            else:
                slot.done = True

    def _spawn(self, slot: _Slot) -> None:
        from finex_workers.infra.reachability import describe

        if self.stopping:  # a stop came while the supervisor was starting its children
            slot.done = True
            return
        supervisor_pid = os.getpid()
        if self._deadlines is not None and slot.cell >= 0:
            self._deadlines.set(slot.cell, 0.0)
        # A stop that comes during the fork waits until the child's pid is recorded, so the
        # handler signals it too; the child unblocks the signals (the mask survives fork).
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            raise
        if pid == 0:  # child
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
                if slot.kind == "scheduler":
                    code = run_scheduler(self.settings, slot.queue.split(","))
                elif slot.kind == "metrics":
                    code = run_metrics_server(
                        self.metrics_host,
                        self.metrics_port or 0,
                        self.settings,
                        self.queues,
                        supervisor_pid,
                    )
                else:
                    if self._deadlines is not None and slot.cell >= 0:
                        from finex_workers.runtime import backstop

                        backstop.use(self._deadlines, slot.cell)
                    code = run_worker(
                        self.settings,
                        slot.queue,
                        burst=self.burst,
                        metrics=self.metrics_port is not None,
                    )
            except Exception as exc:
                unreachable = describe(exc, self.settings)
                if unreachable is None:
                    log.exception("worker for %s crashed", slot.queue)
                else:  # the supervisor waits for Redis before restarting it; no traceback
                    log.error("worker for %s stopped: %s", slot.queue, unreachable)
            finally:
                logging.shutdown()
                os._exit(code)
        slot.pid = pid
        slot.started_at = time.monotonic()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            slot.pid = 0
            if self.metrics_port is not None:
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
            code = os.waitstatus_to_exitcode(status)
            overdue, slot.overdue = slot.overdue, False
            if code != 0 and slot.kind == "worker":  # also while stopping: its job is abandoned
                self._recover_crashed(slot, pid, code, overdue=overdue)
            if code == 0 and self.respawn_stopped and slot.kind == "worker" and not self.stopping:
                log.info("worker %d (%s) stopped; starting a fresh one", pid, slot.queue)
                slot.restart_at = time.monotonic() + RESTART_BACKOFF[0]
                continue
            if code == 0 or self.stopping:
                log.info("worker %d (%s) exited with %d", pid, slot.queue, code)
                slot.done = True
                continue
            if time.monotonic() - slot.started_at >= STABLE_SECONDS:
                slot.crashes = 0
            slot.crashes += 1
            delay = min(RESTART_BACKOFF[0] * 2 ** (slot.crashes - 1), RESTART_BACKOFF[1])
            slot.restart_at = time.monotonic() + delay
            log.warning(
                "worker %d (%s) died with %d; restarting in %.1fs", pid, slot.queue, code, delay
            )

    def _recover_crashed(self, slot: _Slot, pid: int, code: int, *, overdue: bool) -> None:
        """Recover the job of a worker child that just died abnormally, now, with the reason.

        The supervisor reaps its children every 0.1 s, so it knows of a death (and its exit
        status) at once; the sweep would find the job only at its next round (its dead pid), or
        after FINEX_WORKER_TTL from another host. The same atomic script as the sweep's, whose
        ZREM is the claim: the job is recovered once whoever comes first. A child that held no
        job (a crash between jobs) costs one registry read.
        """
        from finex_workers import control
        from finex_workers.infra.reachability import describe
        from finex_workers.infra.redisconn import redis_from_url
        from finex_workers.runtime.worker import worker_name

        prefix = worker_name(slot.queue, pid).rpartition("-")[0] + "-"
        crash = control.Crash.of_exit(prefix, code, overdue=overdue)
        try:
            conn = redis_from_url(self.settings.redis_url)
            try:
                report = control.clean_stuck_jobs(
                    conn, slot.queue, max_crashes=self.settings.max_crashes, dead_worker=crash
                )
            finally:
                conn.close()
        except Exception as exc:  # the sweep recovers the job later (its pid is gone)
            unreachable = describe(exc, self.settings)
            log.error("recovering the job of worker %d failed: %s", pid, unreachable or exc)
            return
        for job_id in report.requeued + report.dead_lettered:
            log.warning(
                "worker %d (%s) died (%s); its job %s was recovered at once: %s",
                pid,
                slot.queue,
                crash,
                job_id,
                report.reasons.get(job_id, ""),
            )

    def _sweep(self) -> None:
        from finex_workers import control
        from finex_workers.infra.reachability import describe
        from finex_workers.infra.redisconn import redis_from_url

        try:
            conn = redis_from_url(self.settings.redis_url)
            for queue in self.queues:
                report = control.clean_stuck_jobs(
                    conn, queue, max_crashes=self.settings.max_crashes
                )
                if report.requeued or report.dead_lettered:
                    log.warning("recovered abandoned jobs on %s: %s", queue, report)
            conn.close()
        except Exception as exc:
            unreachable = describe(exc, self.settings)
            if unreachable is None:
                log.exception("stuck-job sweep failed; will try again")
            else:
                log.error("stuck-job sweep skipped: %s", unreachable)


def run_worker(
    settings: Settings, queue: str, *, burst: bool = False, metrics: bool = False
) -> int:
    """Body of one worker process: connect (after fork) and work until stopped."""
    from finex_workers.infra import dbconn
    from finex_workers.infra.redisconn import get_queue, redis_from_url
    from finex_workers.runtime.worker import FinexWorker, worker_name

    worker_metrics = None
    if metrics:
        from prometheus_client import CollectorRegistry

        from finex_workers.observability.metrics import WorkerMetrics

        # Values go to this process's files in PROMETHEUS_MULTIPROC_DIR; the registry is only
        # the owner the metric objects need. The metrics child reads the files.
        worker_metrics = WorkerMetrics(registry=CollectorRegistry())
    conn = redis_from_url(settings.redis_url)
    worker = FinexWorker(
        [get_queue(queue, conn)],
        name=worker_name(queue, os.getpid()),
        connection=conn,
        worker_ttl=settings.worker_ttl,
        job_monitoring_interval=max(1, settings.worker_ttl // 3),
        metrics=worker_metrics,
        database_url=settings.worker_database_url,
        outage_returns_max=settings.outage_returns_max,
        max_crashes=settings.max_crashes,
    )
    try:
        worker.work(burst=burst, logging_level="INFO")
    finally:
        dbconn.close()
    return 0


def run_scheduler(settings: Settings, queues: Sequence[str]) -> int:
    """Body of the scheduler process: enqueue retries whose backoff has elapsed."""
    from finex_workers.infra.redisconn import redis_from_url
    from finex_workers.runtime import scheduler

    return scheduler.run_scheduler(redis_from_url(settings.redis_url), queues)


def run_metrics_server(
    host: str, port: int, settings: Settings, queues: Sequence[str], supervisor_pid: int
) -> int:
    """Body of the metrics process: the sum of every worker's multiprocess files on /metrics,
    and the pod's probes on /livez and /readyz (observability.health)."""
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.multiprocess import MultiProcessCollector

    from finex_workers.observability.health import probes
    from finex_workers.observability.http import serve

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    app = probes(make_wsgi_app(registry), settings, queues, supervisor_pid)
    return serve(app, host=host, port=port, log=log, what="worker metrics, /livez and /readyz")


def configure_logging(level: str = "INFO") -> None:
    """One line per event, with the process id, to stderr (what kubectl logs shows)."""
    logging.basicConfig(
        stream=sys.stderr,
        level=level,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
