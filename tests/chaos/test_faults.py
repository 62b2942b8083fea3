"""Faults on a live fleet with a backlog; after each, the ledger invariant (tests/chaos/ledger.py).

Each test SIGKILLs or stops something real mid-backlog and then waits for the backlog to drain.
Recovery time is from the end of the fault to the moment every job that was in flight at the
fault (or, for an outage, the whole backlog) has finished.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from finex_workers import control
from finex_workers.infra.redisconn import get_queue
from finex_workers.observability.metrics import exporter_registry
from tests.chaos.conftest import JOBS, PG_OUTAGE, Services
from tests.chaos.trial import QUEUE, Trial
from tests.support.fleet import ROOT
from tests.support.waiting import wait_for


@pytest.fixture
def trial(chaos_env: dict[str, str]) -> Iterator[Trial]:
    t = Trial(chaos_env)
    yield t
    t.close()


def _busy_worker_pid(t: Trial) -> tuple[int, str]:
    """A worker that has been running its job (inside the probe's transaction) a little while."""

    def busy() -> tuple[int, str] | None:
        for w in control.live_workers(t.conn, QUEUE):
            job_id = w.get_current_job_id()
            if job_id and t.conn.hget(f"rq:job:{job_id}", "status") == b"started":
                return w.pid, job_id
        return None

    found = wait_for("a busy worker", busy, timeout=30, every=0.02)
    time.sleep(0.05)  # into the job's transaction (it holds 0.3 s)
    return found


def test_worker_sigkill_mid_job(trial: Trial) -> None:
    trial.enqueue(JOBS, hold=0.3)
    trial.start_fleet()
    trial.wait_progress(3)
    pid, job_id = _busy_worker_pid(trial)
    os.kill(pid, signal.SIGKILL)
    end = time.monotonic()
    done = trial.wait_done([job_id])
    trial.wait_all_done()
    trial.record("SIGKILL of a worker mid-job", 1, end, done)


def test_a_job_that_sigkills_its_worker_is_quarantined(trial: Trial) -> None:
    """A job that kills its worker every time (an OOM kill's effect) runs FINEX_MAX_CRASHES
    times, is quarantined, and the backlog behind it drains, each job once (issue 19)."""
    from finex_workers.runtime import enqueue

    trial.enqueue(JOBS // 2, hold=0.3)
    killer = enqueue.enqueue_unique(
        get_queue(QUEUE, trial.conn),
        "tests.support.testjobs.kills_its_worker",
        {"key": "chaos"},
        "chaos-killer",
        trial.settings,
    ).job_id
    trial.enqueue(JOBS // 2, hold=0.3, prefix="q")
    trial.start_fleet()
    start = time.monotonic()
    failed = FailedJobRegistry(QUEUE, trial.conn)
    wait_for("the killer quarantined", lambda: killer in failed.get_job_ids(), timeout=120)
    quarantined_at = time.monotonic()
    crashes, reason = trial.conn.hmget(f"rq:job:{killer}", ["finex_crashes", "finex_quarantined"])
    assert int(crashes or 0) == trial.settings.max_crashes
    assert (reason or b"").startswith(b"signal: killed by SIGKILL"), reason
    assert trial.conn.llen("test:runs:chaos") == trial.settings.max_crashes
    trial.wait_all_done()
    trial.record(
        f"job SIGKILLs its worker ({trial.settings.max_crashes}x): quarantined",
        1,
        start,
        quarantined_at,
    )


def test_supervisor_group_sigkill(trial: Trial) -> None:
    trial.enqueue(JOBS, hold=0.3)
    fleet = trial.start_fleet()
    trial.wait_progress(3)
    _busy_worker_pid(trial)
    affected = trial.active()
    fleet.kill()
    trial.start_fleet(wait=False)
    end = time.monotonic()
    done = trial.wait_done(affected)
    trial.wait_all_done()
    trial.record("SIGKILL of the whole supervisor group", len(affected), end, done)


def test_redis_sigkill_and_aof_restart(trial: Trial, chaos_services: Services) -> None:
    trial.enqueue(JOBS, hold=0.3)
    time.sleep(1.2)  # appendfsync everysec: the backlog itself is on disk
    trial.start_fleet()
    trial.wait_progress(3)
    affected = trial.active()
    chaos_services.kill_redis()
    time.sleep(2)
    chaos_services.start_redis()
    end = time.monotonic()
    done = trial.wait_done(affected)
    trial.wait_all_done()
    ledger = trial.record(
        "Redis SIGKILL + restart from AOF",
        len(affected),
        end,
        done,
        allow_duplicates=True,
        note="a rerun = a completion in the last AOF second, lost with Redis",
    )
    assert len(ledger.duplicated) <= len(affected) + 4, ledger


def test_postgres_outage_costs_no_retries(trial: Trial, chaos_services: Services) -> None:
    """The issue's test: PostgreSQL down for PG_OUTAGE s mid-backlog; no DLQ entry, none lost,
    and the status and the metrics show the outage."""
    trial.enqueue(JOBS, hold=0.3)
    trial.start_fleet()
    trial.wait_progress(3)
    chaos_services.stop_pg_immediate()
    time.sleep(PG_OUTAGE)
    # Meanwhile nothing went to the DLQ and the backlog waits, attempts intact.
    assert FailedJobRegistry(QUEUE, trial.conn).count == 0
    state = control.queue_state(trial.conn, QUEUE)
    assert state.outages >= 1, state
    assert state.last_outage.startswith("PostgreSQL at "), state
    chaos_services.start_pg()
    end = time.monotonic()
    done = trial.wait_all_done()
    ledger = trial.record(
        f"PostgreSQL immediate stop, {PG_OUTAGE:.0f} s, start",
        control.queue_state(trial.conn, QUEUE).outages,
        end,
        done,
        note="jobs returned with attempts intact",
    )
    assert ledger.dead_lettered == []
    # No attempt used: every job still has its full retry budget.
    jobs = [Job.fetch(j, connection=trial.conn) for j in trial.probes.values()]
    assert {j.retries_left for j in jobs} == {trial.settings.retry_max}
    # The status and the metrics show it.
    out = subprocess.run(
        [sys.executable, "-m", "finex_workers.cli", "workers", "status", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **trial.env, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    row = next(r for r in json.loads(out.stdout) if r["queue"] == QUEUE)
    assert row["outages"] >= 1, row
    assert row["last_outage"].startswith("PostgreSQL"), row
    registry: CollectorRegistry = exporter_registry(lambda: trial.conn, [QUEUE])
    value = registry.get_sample_value("finex_jobs_outage_returns_total", {"queue": QUEUE})
    assert value is not None
    assert value >= 1


def test_dlq_retry_racing_a_sweep(trial: Trial) -> None:
    trial.enqueue(JOBS, hold=0.05)
    q = get_queue(QUEUE, trial.conn)
    failed = FailedJobRegistry(QUEUE, trial.conn)
    dead = list(trial.probes.values())[: JOBS // 2]
    for job_id in dead:  # dead-lettered jobs, as the sweep or RQ leave them
        trial.conn.lrem(q.key, 1, job_id)
        job = Job.fetch(job_id, connection=trial.conn)
        job.set_status(JobStatus.FAILED)
        failed.add(job, ttl=3600)
    trial.start_fleet()
    start = time.monotonic()
    stop = threading.Event()

    def sweep() -> None:
        while not stop.is_set():
            control.clean_stuck_jobs(trial.conn, QUEUE)

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    try:
        halves = [dead[::2], dead[1::2]]
        retriers = [
            threading.Thread(target=control.retry_dlq, args=(trial.conn, QUEUE, ids))
            for ids in (*halves, dead)
        ]
        for r in retriers:
            r.start()
        for r in retriers:
            r.join()
        done = trial.wait_all_done()
    finally:
        stop.set()
        sweeper.join()
    trial.record("DLQ retry racing a sweep", len(dead), start, done)
