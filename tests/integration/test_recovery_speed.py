"""No dead time after crashes: a dead scheduler's lock is taken over, stranded jobs come back
within one sweep, and a due retry runs on time right after the whole supervisor was SIGKILLed."""

from __future__ import annotations

import socket
import subprocess
import time
from datetime import UTC, datetime

from rq.job import Job
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.utils import utcformat

from finex_workers import control
from finex_workers.control.scheduling import STALE_SECONDS, take_over_lock
from finex_workers.core.settings import Settings
from finex_workers.infra.processes import pid_namespace
from finex_workers.infra.redisconn import get_queue
from finex_workers.runtime import enqueue
from finex_workers.runtime.scheduler import FinexScheduler
from tests.support.fleet import probe
from tests.support.waiting import wait_for

LOCK = RQScheduler.get_locking_key("growth")


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _holder(
    conn, name: str, *, pid: int, host: str, beat_age: float = 0.0, pidns: str | None = None
) -> None:
    """A scheduler's lock and record; pidns: the PID namespace it records (this one's when it
    runs on this host, none when it is elsewhere)."""
    conn.set(LOCK, name, ex=61)
    beat = utcformat(datetime.fromtimestamp(time.time() - beat_age, tz=UTC))
    if pidns is None:
        pidns = pid_namespace() if host == socket.gethostname() else ""
    conn.hset(
        SCHEDULER_KEY_TEMPLATE % name,
        mapping={"name": name, "hostname": host, "pid": pid, "last_heartbeat": beat,
                 "finex_pidns": pidns},
    )  # fmt: skip


def test_a_live_holder_keeps_its_lock(redis_conn) -> None:
    import os

    _holder(redis_conn, "alive", pid=os.getpid(), host=socket.gethostname())
    assert take_over_lock(redis_conn, "growth", "newcomer", 61) is None
    _holder(redis_conn, "elsewhere", pid=1, host="another-host")
    assert take_over_lock(redis_conn, "growth", "newcomer", 61) is None
    assert redis_conn.get(LOCK) == b"elsewhere"


def test_a_holder_in_another_pid_namespace_of_this_host_is_not_judged_by_its_pid(
    redis_conn,
) -> None:
    # A debug container shares the Pod's hostname, not its PIDs: the holder's pid means nothing
    # here, so only its lock's staleness can tell.
    _holder(redis_conn, "in-the-pod", pid=_dead_pid(), host=socket.gethostname(), pidns="pod:1")
    assert take_over_lock(redis_conn, "growth", "debug-container", 61) is None
    assert redis_conn.get(LOCK) == b"in-the-pod"


def test_the_scheduler_records_its_pid_namespace(redis_conn) -> None:
    scheduler = FinexScheduler(["growth"], redis_conn)
    scheduler.register_birth()
    assert redis_conn.hget(scheduler.key, "finex_pidns") == pid_namespace().encode()


def test_a_dead_holders_lock_is_taken_over_at_once(redis_conn) -> None:
    _holder(redis_conn, "killed", pid=_dead_pid(), host=socket.gethostname())
    scheduler = FinexScheduler(["growth"], redis_conn)
    assert scheduler.acquire_locks() == {"growth"}
    assert redis_conn.get(LOCK) == scheduler.name.encode()

    # On another host only the beat tells: a lock not refreshed for STALE_SECONDS, judged on
    # Redis's clock (the lock's TTL), not on the heartbeat time the other host wrote.
    _holder(redis_conn, "far", pid=1, host="another-host", beat_age=STALE_SECONDS + 2)
    redis_conn.pexpire(LOCK, int((61 - STALE_SECONDS - 2) * 1000))
    assert "not refreshed" in (take_over_lock(redis_conn, "growth", "newcomer", 61) or "")
    # Its metadata gone (expired with the process): taken over too.
    redis_conn.set(LOCK, "vanished")
    assert "gone" in (take_over_lock(redis_conn, "growth", "newcomer", 61) or "")


def test_a_popped_but_not_started_job_comes_back_in_one_sweep(
    redis_conn, db, settings, start_fleet
) -> None:
    fleet = start_fleet(["growth"])
    fleet.wait_ready(redis_conn)
    control.pause(redis_conn, "growth")
    job_id = probe(redis_conn, settings, "growth", "popped")
    q = get_queue("growth", redis_conn)
    # What a plain `rq worker` SIGKILLed right after its LMOVE leaves behind, next to live workers.
    assert redis_conn.lmove(q.key, q.intermediate_queue_key) == job_id.encode()
    control.resume(redis_conn, "growth")
    started = time.monotonic()
    report = control.clean_stuck_jobs(redis_conn, "growth")
    assert job_id in report.requeued, report
    assert time.monotonic() - started < 5  # one sweep (it waits the 2 s grace once)
    wait_for(
        "the job to run",
        lambda: Job.fetch(job_id, connection=redis_conn).get_status() == "finished",
    )


def test_a_due_retry_runs_on_time_after_the_supervisor_was_sigkilled(
    redis_conn, fleet_env, start_fleet
) -> None:
    backoff = Settings.from_env({**fleet_env, "FINEX_RETRY_INTERVALS": "3"})
    job_id = enqueue.enqueue_unique(
        get_queue("matrix", redis_conn),
        "tests.support.testjobs.flaky_job",
        {"key": "late", "fail_times": 1},
        "flaky-late",
        backoff,
    ).job_id
    first = start_fleet(["matrix"])
    first.wait_ready(redis_conn)
    wait_for(
        "the scheduler's lock", lambda: redis_conn.exists(RQScheduler.get_locking_key("matrix"))
    )
    wait_for("the retry to be scheduled", lambda: control.queue_state(redis_conn, "matrix").delayed)
    due = time.monotonic() + 3
    first.kill()  # supervisor, workers and scheduler: the lock outlives them by ~61 s
    start_fleet(["matrix"])
    wait_for(
        "the retry to run",
        lambda: Job.fetch(job_id, connection=redis_conn).get_status() == "finished",
        timeout=60,
    )
    late = time.monotonic() - due
    assert late < 8, f"the retry ran {late:.1f}s late"
