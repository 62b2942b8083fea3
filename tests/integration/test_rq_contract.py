"""FinexWorker keeps rq 3.0.0's worker contract (issue 26), checked against a real Redis.

Each test runs rq's own ``SimpleWorker`` (or, for stop commands, rq's forking ``Worker``, the
one whose stop works) beside ``FinexWorker`` on the same scenario, so the reference behaviour is
measured here and not only quoted. The workers run in this process's main thread, as rq's own
tests run them (``work()`` installs signal handlers, which only the main thread may do); the
fixture below puts pytest's handlers back afterwards.

Where FinexWorker differs on purpose (one queue per worker; started-registry entries that
expire ``worker_ttl`` after the last beat; a short Redis socket timeout), docs/architecture.md
("FinexWorker and rq's worker contract") says so and the tests pin the difference.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Callback, Queue, SimpleWorker, Worker, get_current_job
from rq.command import send_shutdown_command, send_stop_execution_command, send_stop_job_command
from rq.job import Job, JobStatus
from rq.results import Result

from finex_workers.infra import dbconn
from finex_workers.infra.redisconn import redis_from_url
from finex_workers.runtime.worker import FinexWorker
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "contract"
#: Signals whose handlers a worker's work() replaces (SIGALRM: rq's death penalty).
HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM, signal.SIGUSR1)


# -- job functions (imported by dotted path, also by rq's forked work horse) -------------------


def succeed() -> int:
    return 42


def raising_success_callback(job: Job, connection: redis.Redis, result: Any) -> None:
    raise RuntimeError(f"success callback of {job.id} failed on purpose")


def calls_sys_exit() -> None:
    sys.exit(3)


def raises_keyboard_interrupt() -> None:
    raise KeyboardInterrupt("raised by the job itself")


def sleeps(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def sleeps_in_postgres(seconds: float) -> None:
    dbconn.run(os.environ["DATABASE_URL"], lambda c: c.execute("SELECT pg_sleep(%s)", (seconds,)))


def asks_postgres() -> int:
    row = dbconn.run(os.environ["DATABASE_URL"], lambda c: c.execute("SELECT 7").fetchone())
    assert row is not None
    return int(str(row[0]))


def listeners_of_my_worker() -> int:
    """How many clients listen on the command channel of the worker running this job."""
    job = get_current_job()
    assert job is not None
    reply = job.connection.pubsub_numsub(f"rq:pubsub:{job.worker_name}")
    return int(reply[0][1])


#: The worker a test runs in-process, for callbacks that need to wait on it.
_CURRENT: dict[str, Any] = {}


def stop_me_late(job: Job, connection: redis.Redis, result: Any) -> None:
    """A success callback: the job has returned; now a stop-job command for it arrives."""
    worker = _CURRENT["worker"]
    dropped = _CURRENT["dropped"]
    send_stop_job_command(connection, job.id)
    wait_for(
        "the worker to take the stop command",
        lambda: worker._stopped_job_id == job.id or job.id in dropped,
        10,
    )


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in HANDLED}
    yield
    signal.alarm(0)
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    _CURRENT.clear()


def work(worker: Any, **kwargs: Any) -> BaseException | None:
    """Run worker.work(**kwargs); return what escaped it (None: it returned), never re-raise.

    A KeyboardInterrupt escaping into pytest would end the whole session, so nothing escapes.
    """
    try:
        worker.work(**kwargs)
    except BaseException as exc:
        return exc
    return None


def in_thread(fn: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def watch_deregistration(conn: redis.Redis, worker_key: str) -> list[float]:
    """Record (monotonic time) when the worker registers its death.

    Tests time a worker's stop to its deregistration, not to work()'s return: the unsubscribe
    after it can hang for a minute, rq's own workers included (issue 25), and the worker's
    record expires 60 s after its death.
    """
    seen: list[float] = []

    def watch() -> None:
        wait_for("deregistration", lambda: conn.hexists(worker_key, "death"), 60, every=0.02)
        seen.append(time.monotonic())

    in_thread(watch)
    return seen


def status(conn: redis.Redis, job_id: str) -> JobStatus | None:
    return Job.fetch(job_id, connection=conn).get_status()


def failure_text(conn: redis.Redis, job_id: str) -> str:
    result = Result.fetch_latest(Job.fetch(job_id, connection=conn))
    assert result is not None, f"no result recorded for {job_id}"
    return str(result.exc_string)


# -- a success callback that raises ------------------------------------------------------------


@pytest.mark.parametrize("worker_class", [SimpleWorker, FinexWorker])
def test_a_success_callback_that_raises_fails_the_job_and_the_worker_carries_on(
    redis_conn: redis.Redis, worker_class: type[SimpleWorker]
) -> None:
    q = Queue(QUEUE, connection=redis_conn)
    bad = q.enqueue(succeed, on_success=Callback(raising_success_callback))
    good = q.enqueue(succeed)
    worker = worker_class([q], connection=redis_conn)

    escaped = work(worker, burst=True)

    assert escaped is None, f"{escaped!r} escaped work()"
    assert status(redis_conn, bad.id) == JobStatus.FAILED
    assert bad.id in q.failed_job_registry
    assert "success callback of" in failure_text(redis_conn, bad.id)
    assert bad.id not in q.started_job_registry
    assert status(redis_conn, good.id) == JobStatus.FINISHED  # the worker carried on


# -- a job that exits ----------------------------------------------------------------------------


@pytest.mark.parametrize("job_function", [calls_sys_exit, raises_keyboard_interrupt])
@pytest.mark.parametrize("worker_class", [SimpleWorker, FinexWorker])
def test_a_job_raising_a_base_exception_fails_and_the_worker_carries_on(
    redis_conn: redis.Redis, worker_class: type[SimpleWorker], job_function: Callable[[], None]
) -> None:
    q = Queue(QUEUE, connection=redis_conn)
    bad = q.enqueue(job_function)
    good = q.enqueue(succeed)
    worker = worker_class([q], connection=redis_conn)

    escaped = work(worker, burst=True)

    assert escaped is None, f"{escaped!r} escaped work()"
    assert status(redis_conn, bad.id) == JobStatus.FAILED
    assert bad.id in q.failed_job_registry
    assert bad.id not in q.started_job_registry
    assert status(redis_conn, good.id) == JobStatus.FINISHED


def test_a_cold_shutdown_during_a_job_still_ends_the_worker(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    """The one BaseException that is not the job's: a second SIGTERM (rq's cold shutdown) ends
    the process at once; the job stays started for the stuck-job sweep, as before."""
    q = Queue(QUEUE, connection=redis_conn)
    job = q.enqueue(sleeps, 30)
    worker = FinexWorker([q], connection=redis_conn)
    died = watch_deregistration(redis.Redis.from_url(redis_url), worker.key)
    cold: list[float] = []

    def two_sigterms() -> None:
        wait_for("the job to start", lambda: status(redis_conn, job.id) == "started", 10)
        os.kill(os.getpid(), signal.SIGTERM)  # warm: finish the job, then stop
        time.sleep(1.2)  # rq ignores a second signal within 1 s of the first
        cold.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)  # cold

    in_thread(two_sigterms)
    escaped = work(worker, burst=True)

    assert isinstance(escaped, SystemExit), escaped
    assert cold, "the second SIGTERM was not sent"
    wait_for("the watcher to see the deregistration", lambda: died, 5)
    assert died[0] - cold[0] < 5
    assert status(redis_conn, job.id) == JobStatus.STARTED


# -- timeouts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [5, 6, 15, 60, 420])
def test_timeouts_derive_from_worker_ttl_as_documented(redis_url: str, ttl: int) -> None:
    """rq: block max(1, ttl - 15) s for a job, socket timeout 10 s more. FinexWorker: block
    min(5, max(1, ttl // 3)) s, so an idle worker beats within 2/3 of its TTL and a silent Redis
    is noticed within 15 s; the socket timeout keeps rq's "+ 10" (docs/architecture.md)."""
    q = Queue(QUEUE, connection=redis.Redis.from_url(redis_url))
    theirs = SimpleWorker([q], connection=redis.Redis.from_url(redis_url), worker_ttl=ttl)
    ours = FinexWorker([q], connection=redis.Redis.from_url(redis_url), worker_ttl=ttl)

    assert theirs.dequeue_timeout == max(1, ttl - 15)
    assert (
        theirs.connection.connection_pool.connection_kwargs["socket_timeout"]
        == max(1, ttl - 15) + 10
    )
    assert ours.worker_ttl == ttl
    assert ours.dequeue_timeout == min(5, max(1, ttl // 3))
    assert ours.connection.connection_pool.connection_kwargs["socket_timeout"] == (
        ours.dequeue_timeout + 10
    )
    # A connection that already waits longer keeps its timeout, as with rq.
    patient = redis.Redis.from_url(redis_url, socket_timeout=120)
    FinexWorker([q], connection=patient, worker_ttl=ttl)
    assert patient.connection_pool.connection_kwargs["socket_timeout"] == 120


def test_a_worker_ttl_too_short_for_our_heartbeat_is_a_clear_error(redis_conn: redis.Redis) -> None:
    q = Queue(QUEUE, connection=redis_conn)
    SimpleWorker([q], connection=redis_conn, worker_ttl=2)  # rq accepts it
    with pytest.raises(ValueError, match=r"worker_ttl=2 .*at least 5"):
        FinexWorker([q], connection=redis_conn, worker_ttl=2)


@pytest.mark.parametrize("worker_class", [SimpleWorker, FinexWorker])
def test_an_idle_worker_beats_within_two_thirds_of_its_ttl(
    redis_conn: redis.Redis, redis_url: str, worker_class: type[SimpleWorker]
) -> None:
    ttl = 5
    q = Queue(QUEUE, connection=redis_conn)
    worker = worker_class([q], connection=redis.Redis.from_url(redis_url), worker_ttl=ttl)
    ages: list[float] = []

    def watch() -> None:
        wait_for("registration", lambda: redis_conn.hget(worker.key, "last_heartbeat"), 10)
        deadline = time.monotonic() + 3 * ttl
        while time.monotonic() < deadline:
            beat = redis_conn.hget(worker.key, "last_heartbeat")
            if beat is not None:
                at = datetime.fromisoformat(beat.decode().replace("Z", "+00:00"))
                ages.append((datetime.now(UTC) - at.replace(tzinfo=UTC)).total_seconds())
            time.sleep(0.05)
        send_shutdown_command(redis_conn, worker.name)

    in_thread(watch)
    escaped = work(worker)

    assert escaped is None, escaped
    assert ages, "no heartbeat observed"
    assert max(ages) < ttl * 2 / 3 + 0.3, f"oldest heartbeat seen: {max(ages):.2f}s"


class FreezableProxy:
    """A TCP relay to Redis that can stop passing bytes without closing anything: what a
    network partition or a lost node looks like to a client (no RST, no FIN, no reply)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.frozen = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        in_thread(self._accept)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for src, dst in ((client, upstream), (upstream, client)):
                in_thread(lambda src=src, dst=dst: self._pipe(src, dst))

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.01)
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._server.close()


def test_an_idle_worker_notices_a_silent_redis_within_its_socket_timeout(
    redis_conn: redis.Redis, redis_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The reason for our short timeouts: an idle worker whose Redis stops answering (without
    closing the connection) takes the outage path within one socket timeout, 12 s here
    (worker_ttl 6: 2 s wait + 10); rq's SimpleWorker at its defaults would wait 415 s. The
    client is the one every worker gets (redis_from_url), which does not retry a timed-out
    command.
    """
    caplog.set_level(logging.INFO, logger="rq.worker")
    proxy = FreezableProxy(("127.0.0.1", redis_server.port))
    conn = redis_from_url(f"redis://127.0.0.1:{proxy.port}/0")
    worker = FinexWorker([Queue(QUEUE, connection=conn)], connection=conn, worker_ttl=6)
    socket_timeout = conn.connection_pool.connection_kwargs["socket_timeout"]
    assert socket_timeout == 12
    noticed: list[float] = []

    def lost() -> bool:
        return any("lost Redis" in r.getMessage() for r in list(caplog.records))

    def partition() -> None:
        wait_for("registration", lambda: redis_conn.exists(worker.key), 10)
        time.sleep(0.5)  # idle, in its blocking wait
        frozen_at = time.monotonic()
        proxy.frozen.set()
        try:
            wait_for("the worker to notice", lost, socket_timeout + 10)
            noticed.append(time.monotonic() - frozen_at)
        finally:
            proxy.frozen.clear()
            job = Queue(QUEUE, connection=redis_conn).enqueue(succeed)
            wait_for(
                "the worker to take jobs again",
                lambda: status(redis_conn, job.id) == "finished",
                40,
            )
            os.kill(os.getpid(), signal.SIGINT)  # a warm stop of the idle worker

    in_thread(partition)
    try:
        escaped = work(worker)
    finally:
        proxy.close()

    assert escaped is None, f"{escaped!r} escaped work()"
    assert noticed, "the worker did not notice the silent Redis"
    print(f"silent Redis noticed after {noticed[0]:.1f}s (socket timeout {socket_timeout}s)")
    assert noticed[0] < socket_timeout + 1, f"noticed after {noticed[0]:.1f}s"


# -- driven like an rq worker ----------------------------------------------------------------------


@pytest.mark.parametrize("worker_class", [SimpleWorker, FinexWorker])
def test_work_can_be_called_twice_and_listens_both_times(
    redis_conn: redis.Redis, worker_class: type[SimpleWorker]
) -> None:
    q = Queue(QUEUE, connection=redis_conn)
    worker = worker_class([q], connection=redis_conn)
    heard = []
    for _ in range(2):
        job = q.enqueue(listeners_of_my_worker)
        escaped = work(worker, burst=True)
        assert escaped is None, f"{escaped!r} escaped work()"
        heard.append(Job.fetch(job.id, connection=redis_conn).return_value())
    assert heard == [1, 1]


@pytest.mark.parametrize("worker_class", [SimpleWorker, FinexWorker])
def test_work_with_scheduler_and_every_rq_argument(
    redis_conn: redis.Redis, worker_class: type[SimpleWorker]
) -> None:
    q = Queue(QUEUE, connection=redis_conn)
    due = q.enqueue_at(datetime.now(UTC) - timedelta(seconds=1), succeed)
    assert status(redis_conn, due.id) == JobStatus.SCHEDULED
    worker = worker_class([q], connection=redis_conn)

    escaped = work(
        worker,
        burst=True,
        logging_level="INFO",
        date_format="%H:%M:%S",
        log_format="%(asctime)s %(message)s",
        max_jobs=5,
        max_idle_time=None,
        with_scheduler=True,
        dequeue_strategy="default",
    )

    assert escaped is None, f"{escaped!r} escaped work()"
    assert status(redis_conn, due.id) == JobStatus.FINISHED


@pytest.mark.parametrize("worker_class", [SimpleWorker, FinexWorker])
def test_max_idle_time_ends_an_idle_worker(
    redis_conn: redis.Redis, redis_url: str, worker_class: type[SimpleWorker]
) -> None:
    q = Queue(QUEUE, connection=redis_conn)
    job = q.enqueue(succeed)
    worker = worker_class([q], connection=redis_conn)
    died = watch_deregistration(redis.Redis.from_url(redis_url), worker.key)
    started = time.monotonic()
    escaped = work(worker, max_idle_time=2)
    assert escaped is None, f"{escaped!r} escaped work()"
    assert status(redis_conn, job.id) == JobStatus.FINISHED
    wait_for("the watcher to see the deregistration", lambda: died, 5)
    took = died[0] - started
    assert 1.5 < took < 5, f"took {took:.1f}s"


def test_all_and_find_by_key_build_views_of_a_finex_workers_record(
    redis_conn: redis.Redis,
) -> None:
    q = Queue(QUEUE, connection=redis_conn)
    live = FinexWorker([q], connection=redis_conn, name="viewed")
    live.register_birth()
    try:
        for cls in (Worker, FinexWorker):
            views = cls.all(connection=redis_conn)
            assert [(v.name, v.queue_names()) for v in views] == [("viewed", [QUEUE])], cls
            view = cls.find_by_key(live.key, connection=redis_conn)
            assert view is not None
            assert (view.name, view.pid, view.queue_names()) == ("viewed", os.getpid(), [QUEUE])
            assert isinstance(view, cls)
    finally:
        live.register_death()
        live.unsubscribe()


def test_one_queue_per_worker_is_a_clear_error(redis_conn: redis.Redis) -> None:
    """Our deliberate difference: rq's workers serve several queues; FinexWorker serves one.
    A view of a several-queue record is fine; working on it is refused with the reason."""
    q, other = Queue(QUEUE, connection=redis_conn), Queue("other", connection=redis_conn)
    SimpleWorker([q, other], connection=redis_conn)  # rq accepts it
    with pytest.raises(ValueError, match="exactly one queue"):
        FinexWorker([q, other], connection=redis_conn)

    theirs = SimpleWorker([q, other], connection=redis_conn, name="two-queues")
    theirs.register_birth()
    try:
        view = FinexWorker.find_by_key(theirs.key, connection=redis_conn)
        assert view is not None
        assert view.queue_names() == [QUEUE, "other"]
        with pytest.raises(ValueError, match=r"exactly one queue.*other"):
            view.work(burst=True)
    finally:
        theirs.register_death()
        theirs.unsubscribe()


def test_rq_cli_drives_a_finex_worker(redis_conn: redis.Redis, redis_url: str) -> None:
    """`rq worker -w ...FinexWorker --with-scheduler --burst` and `rq info -w ...FinexWorker`."""
    q = Queue(QUEUE, connection=redis_conn)
    now_job = q.enqueue(succeed)
    due = q.enqueue_at(datetime.now(UTC) - timedelta(seconds=1), succeed)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rq = str(Path(sys.executable).with_name("rq"))
    worker_class = "finex_workers.runtime.worker.FinexWorker"

    run = subprocess.run(
        [rq, "worker", "-u", redis_url, "-w", worker_class, "--burst", "--with-scheduler", QUEUE],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=150,  # its unsubscribe can hang for a minute (issue 25)
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert status(redis_conn, now_job.id) == JobStatus.FINISHED
    assert status(redis_conn, due.id) == JobStatus.FINISHED

    live = FinexWorker([q], connection=redis_conn, name="shown-by-rq-info")
    live.register_birth()
    try:
        info = subprocess.run(
            [rq, "info", "-u", redis_url, "-w", worker_class, "-W", QUEUE],
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=150,
        )
    finally:
        live.register_death()
        live.unsubscribe()
    assert info.returncode == 0, info.stderr[-2000:]
    assert "shown-by-rq-info" in info.stdout


# -- stop-job and stop-execution -------------------------------------------------------------------


def _stop(conn: redis.Redis, job_id: str, command: str, took: list[float]) -> None:
    """Send the command once the job runs; record how long it took the job to be STOPPED."""
    wait_for("the job to start", lambda: status(conn, job_id) == "started", 10)
    sent = time.monotonic()
    if command == "stop-job":
        send_stop_job_command(conn, job_id)
    else:
        job = Job.fetch(job_id, connection=conn)
        executions = wait_for("its execution", job.get_executions, 10)
        send_stop_execution_command(conn, job_id, executions[0].id)
    wait_for("the job to be stopped", lambda: status(conn, job_id) == "stopped", 20)
    took.append(time.monotonic() - sent)


@pytest.mark.parametrize("command", ["stop-job", "stop-execution"])
@pytest.mark.parametrize("worker_class", [Worker, FinexWorker])
def test_stop_commands_stop_a_running_job_and_the_worker_carries_on(
    redis_conn: redis.Redis, redis_url: str, worker_class: type[Worker], command: str
) -> None:
    q = Queue(QUEUE, connection=redis_conn)
    long = q.enqueue(sleeps, 30, job_timeout=120)
    after = q.enqueue(succeed)
    worker = worker_class([q], connection=redis_conn)
    took: list[float] = []
    stopper = in_thread(lambda: _stop(redis.Redis.from_url(redis_url), long.id, command, took))

    escaped = work(worker, burst=True)
    stopper.join(5)

    assert escaped is None, f"{escaped!r} escaped work()"
    assert took, "the job was not stopped while it ran"
    assert took[0] < 5, f"stopped {took[0]:.1f}s after the command"
    assert status(redis_conn, long.id) == JobStatus.STOPPED
    assert long.id in q.failed_job_registry
    assert "stopped" in failure_text(redis_conn, long.id).lower()
    assert status(redis_conn, after.id) == JobStatus.FINISHED
    assert worker._stopped_job_id is None


def test_a_stop_that_arrives_after_the_job_returned_changes_nothing(
    redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop reaches the worker while the job's success is recorded: the job is finished,
    the command is dropped (logged), and a later run of the same id is not stopped by it."""
    q = Queue(QUEUE, connection=redis_conn)
    first = q.enqueue(succeed, job_id="reused-id", on_success=Callback(stop_me_late))
    worker = FinexWorker([q], connection=redis_conn)
    dropped: list[str | None] = []
    drop = getattr(worker, "_drop_late_stop", lambda: None)

    def spy() -> None:
        dropped.append(worker._stopped_job_id)
        drop()

    monkeypatch.setattr(worker, "_drop_late_stop", spy, raising=False)
    _CURRENT.update(worker=worker, dropped=dropped)

    escaped = work(worker, burst=True)

    assert escaped is None, f"{escaped!r} escaped work()"
    assert status(redis_conn, first.id) == JobStatus.FINISHED
    assert "reused-id" in dropped  # the command arrived, and was dropped
    assert worker._stopped_job_id is None

    again = q.enqueue(succeed, job_id="reused-id")
    assert work(worker, burst=True) is None
    assert status(redis_conn, again.id) == JobStatus.FINISHED


def test_stop_job_reaches_a_job_waiting_for_postgresql(
    redis_conn: redis.Redis, redis_url: str, database_url: str
) -> None:
    """The job waits in psycopg for a long statement: the stop interrupts it, and the next job
    of the same process gets a working database connection."""
    q = Queue(QUEUE, connection=redis_conn)
    long = q.enqueue(sleeps_in_postgres, 30, job_timeout=120)
    after = q.enqueue(asks_postgres)
    worker = FinexWorker([q], connection=redis_conn)
    took: list[float] = []
    stopper = in_thread(lambda: _stop(redis.Redis.from_url(redis_url), long.id, "stop-job", took))

    try:
        escaped = work(worker, burst=True)
    finally:
        dbconn.close()
    stopper.join(5)

    assert escaped is None, f"{escaped!r} escaped work()"
    assert took, "the job was not stopped while it ran"
    assert took[0] < 5, f"stopped {took[0]:.1f}s after the command"
    assert status(redis_conn, long.id) == JobStatus.STOPPED
    assert status(redis_conn, after.id) == JobStatus.FINISHED
    assert Job.fetch(after.id, connection=redis_conn).return_value() == 7
