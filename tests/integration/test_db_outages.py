"""What is a database outage and what is not; and a job timeout that stops the database work.

Real Redis, real PostgreSQL, Debian's PgBouncer in front of it, and the workers as real
subprocesses (``finex workers start``). Issue 18, items 3 and 8.
"""

from __future__ import annotations

import time

import psycopg
import pytest
import redis
from rq.job import Job

from finex_workers import control
from finex_workers.core.settings import Settings
from finex_workers.dev import localservices
from finex_workers.infra.redisconn import get_queue
from finex_workers.observability.metrics import exporter_registry
from finex_workers.runtime import enqueue
from tests.support.fleet import probe
from tests.support.waiting import wait_for

QUEUE = "growth"


def status(conn: redis.Redis, job_id: str) -> str:
    return Job.fetch(job_id, connection=conn).get_status().value


def outages(conn: redis.Redis) -> int:
    return int(conn.hget(f"finex:stats:{QUEUE}", "outages") or 0)


def calls(conn: redis.Redis, key: str) -> int:
    return int(conn.get(f"test:calls:{key}") or 0)


def enqueue_test_job(
    conn: redis.Redis, settings: Settings, func: str, job_id: str, **kwargs: object
) -> str:
    return enqueue.enqueue_unique(
        get_queue(QUEUE, conn), f"tests.support.dbjobs.{func}", kwargs, job_id, settings
    ).job_id


def config_error(conn: redis.Redis) -> float | None:
    registry = exporter_registry(lambda: conn, [QUEUE])
    return registry.get_sample_value("finex_queue_config_error", {"queue": QUEUE})


def settle(seconds: float) -> None:
    """An observation window, to show that something does NOT happen during it."""
    time.sleep(seconds)


# -- item 3: refused logins and parameters are configuration errors, not outages ----------------


def test_check_postgres_tells_a_refusal_from_a_service_that_does_not_answer(
    pgbouncer_url: str, services_dir
) -> None:
    from finex_workers.core.errors import ServiceRefusedError, ServiceUnreachableError
    from finex_workers.infra.reachability import check_postgres

    worker_url = Settings.from_env({"DATABASE_URL": pgbouncer_url}).worker_database_url
    # PgBouncer answers, and refuses the worker's `options` startup parameter: a refusal.
    with pytest.raises(ServiceRefusedError) as refused:
        check_postgres(worker_url)
    line = str(refused.value)
    assert "unsupported startup parameter: options" in line, line
    assert "FINEX_PG_CONNECTION_CHECK_MS" in line, line
    assert "\n" not in line

    # Without the option PgBouncer lets the worker in.
    check_postgres(
        Settings.from_env(
            {"DATABASE_URL": pgbouncer_url, "FINEX_PG_CONNECTION_CHECK_MS": "0"}
        ).worker_database_url
    )

    # Nothing listens: an outage.
    port = localservices.free_port()
    closed = Settings.from_env(
        {
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/x",
            "FINEX_PG_CONNECTION_CHECK_MS": "0",
        }
    ).worker_database_url
    with pytest.raises(ServiceUnreachableError) as down:
        check_postgres(closed)
    assert not isinstance(down.value, ServiceRefusedError)

    # PgBouncer answers TCP, but the server behind it is down: an outage, not a refusal.
    dead = localservices.start_pgbouncer(services_dir / "pgbouncer-dead", localservices.free_port())
    try:
        behind_dead = Settings.from_env(
            {"DATABASE_URL": dead.url, "FINEX_PG_CONNECTION_CHECK_MS": "0"}
        ).worker_database_url
        with pytest.raises(ServiceUnreachableError) as down:
            check_postgres(behind_dead)
        assert not isinstance(down.value, ServiceRefusedError), down.value
    finally:
        dead.stop()


def test_a_parameter_pgbouncer_refuses_is_a_configuration_error_not_an_endless_outage(
    redis_conn, pgbouncer_url, settings, start_fleet
) -> None:
    """Before: the job went back to the head of its queue, forever, with no alert."""
    fleet = start_fleet([QUEUE], DATABASE_URL=pgbouncer_url)
    fleet.wait_ready(redis_conn)
    job_id = probe(redis_conn, settings, QUEUE, "through-pgbouncer")
    wait_for("the job to come back once", lambda: outages(redis_conn) >= 1, timeout=20)
    settle(3)
    assert outages(redis_conn) == 1, (
        f"the job went back {outages(redis_conn)} times in 3 s: an endless outage loop"
    )
    wait_for("the configuration error to be exported", lambda: config_error(redis_conn) == 1)
    job = Job.fetch(job_id, connection=redis_conn)
    assert job.get_status().value == "queued"
    assert job.retries_left == settings.retry_max  # attempts intact: not the job's fault
    log = fleet.output()
    refusals = [
        line
        for line in log.splitlines()
        if "refused" in line and "FINEX_PG_CONNECTION_CHECK_MS" in line
    ]
    assert refusals, log[-3000:]
    assert "unsupported startup parameter: options" in refusals[0]
    assert "Traceback" not in log


def test_a_worker_resumes_by_itself_once_the_refusal_is_fixed_on_the_server(
    redis_conn, database_url, pg_server, services_dir, settings, start_fleet
) -> None:
    """PgBouncer is told to ignore `options`: the worker's next check logs in, it lifts the
    flag and takes the job it had returned."""
    port = localservices.free_port()
    dbname = database_url.rsplit("/", 1)[1]
    strict = localservices.start_pgbouncer(services_dir / "pgb-strict", pg_server.port, port)
    lenient = None
    try:
        fleet = start_fleet(
            [QUEUE], DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/{dbname}"
        )
        fleet.wait_ready(redis_conn)
        job_id = probe(redis_conn, settings, QUEUE, "fixed-later")
        wait_for("the configuration error", lambda: config_error(redis_conn) == 1, timeout=30)
        strict.stop()
        lenient = localservices.start_pgbouncer(
            services_dir / "pgb-lenient", pg_server.port, port, ignore_startup_parameters="options"
        )
        wait_for(
            "the job to run after the fix",
            lambda: status(redis_conn, job_id) == "finished",
            timeout=40,
        )
        assert config_error(redis_conn) == 0
        assert "PostgreSQL accepts the login again" in fleet.output()
    finally:
        for svc in (strict, lenient):
            if svc is not None:
                svc.stop()


def test_workers_behind_pgbouncer_run_with_the_check_and_prepared_statements_off(
    redis_conn, db, pgbouncer_url, settings, start_fleet
) -> None:
    fleet = start_fleet(
        [QUEUE],
        DATABASE_URL=pgbouncer_url,
        FINEX_PG_CONNECTION_CHECK_MS="0",
        FINEX_PG_PREPARED_STATEMENTS="0",
        GROWTH_WORKER_CONCURRENCY="4",
    )
    fleet.wait_ready(redis_conn)
    # Enough jobs, on enough workers, that each statement runs more often than psycopg's prepare
    # threshold (5) on one connection while PgBouncer's transaction pooling shuffles the server
    # connections: with prepared statements on, some jobs fail (DuplicatePreparedStatement).
    ids = [probe(redis_conn, settings, QUEUE, f"pooled-{n}") for n in range(60)]
    wait_for(
        "the probes to finish through PgBouncer",
        lambda: all(status(redis_conn, job_id) == "finished" for job_id in ids),
        timeout=60,
    )
    assert int(redis_conn.hget(f"finex:stats:{QUEUE}", "failed") or 0) == 0, fleet.output()[-3000:]
    assert outages(redis_conn) == 0
    assert config_error(redis_conn) == 0


def test_a_job_that_terminates_its_own_backend_fails_like_any_job_and_blocks_nothing(
    redis_conn, db, settings, start_fleet
) -> None:
    """Before: 57P01 counted as an outage; the job went back to the head forever."""
    killer = enqueue_test_job(redis_conn, settings, "terminate_own_backend", "killer", key="killer")
    behind = probe(redis_conn, settings, QUEUE, "behind-the-killer")
    fleet = start_fleet([QUEUE])
    fleet.wait_ready(redis_conn)
    try:
        wait_for(
            "the probe behind it to finish",
            lambda: status(redis_conn, behind) == "finished",
            timeout=30,
        )
        wait_for(
            "the killer to reach the DLQ",
            lambda: status(redis_conn, killer) == "failed",
            timeout=30,
        )
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; the killer ran {calls(redis_conn, 'killer')} times, "
            f"returned as an outage {outages(redis_conn)} times"
        ) from None
    assert calls(redis_conn, "killer") == 1 + settings.retry_max  # its attempts, no more
    assert outages(redis_conn) == 0
    assert "AdminShutdown" in control.list_dlq(redis_conn, QUEUE)[0].error


def test_outage_returns_are_capped_and_a_returned_job_does_not_hold_the_head(
    redis_conn, settings, start_fleet
) -> None:
    """A job that always looks like an outage (a Redis error while Redis answers): returned at
    most FINEX_OUTAGE_RETURNS_MAX times, behind the jobs queued after it, then it fails."""
    looper = enqueue_test_job(redis_conn, settings, "redis_error_forever", "looper", key="looper")
    behind = probe(redis_conn, settings, QUEUE, "behind-the-looper")
    fleet = start_fleet([QUEUE], FINEX_OUTAGE_RETURNS_MAX="3")
    fleet.wait_ready(redis_conn)
    try:
        wait_for(
            "the probe behind it to finish",
            lambda: status(redis_conn, behind) == "finished",
            timeout=30,
        )
        wait_for(
            "the looper to reach the DLQ",
            lambda: status(redis_conn, looper) == "failed",
            timeout=30,
        )
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; the looper ran {calls(redis_conn, 'looper')} times, "
            f"returned as an outage {outages(redis_conn)} times"
        ) from None
    assert outages(redis_conn) == 3
    assert calls(redis_conn, "looper") == 3 + 1 + settings.retry_max


# -- item 8: a job timeout stops the database work --------------------------------------------


def backend_of(db: psycopg.Connection, text: str) -> int | None:
    row = db.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND state = 'active' AND query LIKE %s AND pid <> pg_backend_pid()",
        (f"%{text}%",),
    ).fetchone()
    return int(row[0]) if row else None


def test_a_timed_out_job_releases_its_locks_and_its_retry_is_not_blocked(
    redis_conn, db, fleet_env, start_fleet
) -> None:
    """Before: the query ran on after the timeout, holding the row lock, and the retry blocked."""
    settings = Settings.from_env({**fleet_env, "FINEX_JOB_TIMEOUT": "2", "FINEX_RETRY_MAX": "1"})
    job_id = enqueue_test_job(
        redis_conn, settings, "lock_then_sleep", "sleeper", key="sleeper", seconds=60
    )
    fleet = start_fleet([QUEUE], GROWTH_WORKER_CONCURRENCY="2")
    fleet.wait_ready(redis_conn, per_queue=2)
    first = wait_for(
        "the first attempt to sleep holding the lock", lambda: backend_of(db, "pg_sleep")
    )
    started = time.monotonic()
    try:
        wait_for(
            "the retry to finish", lambda: status(redis_conn, job_id) == "finished", timeout=20
        )
    except AssertionError as exc:
        row = db.execute(
            "SELECT state, wait_event_type FROM pg_stat_activity WHERE pid = %s", (first,)
        ).fetchone()
        waiting = db.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        raise AssertionError(
            f"{exc}; job is {status(redis_conn, job_id)}, the first attempt's backend {first} is "
            f"{row}, backends waiting on a lock: {waiting[0]}"
        ) from None
    assert time.monotonic() - started < 10
    assert calls(redis_conn, "sleeper") == 2
    gone = db.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (first,)).fetchone()
    assert gone is None or gone[0] != "active", gone


def test_a_job_that_never_returns_to_python_is_ended_and_recovered(
    redis_conn, fleet_env, start_fleet
) -> None:
    """Before: RQ's timeout never fired (SIGALRM cannot interrupt it) and nothing else did."""
    settings = Settings.from_env({**fleet_env, "FINEX_JOB_TIMEOUT": "2", "FINEX_RETRY_MAX": "1"})
    job_id = enqueue_test_job(
        redis_conn, settings, "never_returns_to_python", "stuck", key="stuck", seconds=300
    )
    fleet = start_fleet([QUEUE])
    fleet.wait_ready(redis_conn)
    wait_for("the job to start", lambda: calls(redis_conn, "stuck") >= 1)
    try:
        wait_for(
            "the job to be recovered and finish",
            lambda: status(redis_conn, job_id) == "finished",
            timeout=40,
        )
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; job is {status(redis_conn, job_id)}, ran {calls(redis_conn, 'stuck')} times"
        ) from None
    assert calls(redis_conn, "stuck") == 2
    assert "past its timeout" in fleet.output()
