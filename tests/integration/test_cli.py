"""The `finex` command as operators run it: a real process against real Redis and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import redis

from finex_workers import control
from finex_workers.core.settings import Settings
from finex_workers.infra.redisconn import get_queue
from finex_workers.runtime import enqueue
from tests.support.fleet import ROOT


def finex(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "finex_workers.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        check=False,
    )


def test_start_refuses_concurrency_zero(fleet_env) -> None:
    out = finex({**fleet_env, "MATRIX_WORKER_CONCURRENCY": "0"}, "workers", "start")
    assert out.returncode == 2
    assert "MATRIX_WORKER_CONCURRENCY=0 is out of range (allowed: 1..64)" in out.stderr


def test_start_refuses_a_fleet_over_the_connection_budget(fleet_env) -> None:
    env = {**fleet_env, "GROWTH_WORKER_CONCURRENCY": "30", "FINEX_PG_CONNECTION_BUDGET": "20"}
    out = finex(env, "workers", "start")
    assert out.returncode == 2
    assert "need 32 PostgreSQL connections (matrix 1 + growth 30 + probability 1)" in out.stderr
    assert "FINEX_PG_CONNECTION_BUDGET is 20" in out.stderr


def test_migrate_is_idempotent(empty_database_url) -> None:
    first = finex({"DATABASE_URL": empty_database_url}, "db", "migrate")
    second = finex({"DATABASE_URL": empty_database_url}, "db", "migrate")
    assert first.returncode == 0
    assert "0001_domain" in first.stdout
    assert second.stdout.strip() == "database is up to date"


def test_pause_status_resume_with_json(fleet_env, redis_conn: redis.Redis) -> None:
    assert finex(fleet_env, "workers", "pause", "--worker", "matrix").returncode == 0
    out = finex(fleet_env, "workers", "status", "--json")
    states = {s["queue"]: s for s in json.loads(out.stdout)}
    assert states["matrix"]["paused"] is True
    assert states["growth"]["paused"] is False
    finex(fleet_env, "workers", "resume", "--worker", "matrix")
    assert not control.is_paused(redis_conn, "matrix")


def test_dlq_verbs_list_json_and_confirm_before_emptying(fleet_env, redis_conn) -> None:
    settings = Settings.from_env(fleet_env)
    q = get_queue("probability", redis_conn)
    job_id = enqueue.enqueue_unique(
        q, "tests.support.testjobs.always_fails", {"reason": "x"}, "dlq-cli", settings
    ).job_id
    finex(
        {**fleet_env, "FINEX_RETRY_MAX": "0"},
        "workers",
        "start",
        "--worker",
        "probability",
        "--burst",
    )
    listed = json.loads(finex(fleet_env, "workers", "list-dlq", "--json").stdout)
    assert [j["id"] for j in listed] == [job_id]
    assert "always fails: x" in listed[0]["error"]

    refused = finex(fleet_env, "workers", "empty-dlq", stdin="")
    assert refused.returncode == 1
    assert "pass --yes" in refused.stderr
    assert len(control.list_dlq(redis_conn, "probability")) == 1

    done = finex(fleet_env, "workers", "empty-dlq", "--worker", "probability", "--yes")
    assert done.returncode == 0
    assert "probability: removed 1 job(s)" in done.stdout
    assert control.list_dlq(redis_conn, "probability") == []


def test_seed_enqueue_full_and_burst_workers_fill_the_matrix(
    fleet_env, db: psycopg.Connection
) -> None:
    assert finex(fleet_env, "seed", "--assets", "60", "--scenarios", "8").returncode == 0
    out = finex(fleet_env, "enqueue", "full")
    assert out.returncode == 0, out.stderr
    assert "enqueued" in out.stdout
    for queue in ("probability", "growth", "matrix"):
        run = finex(fleet_env, "workers", "start", "--worker", queue, "--burst")
        assert run.returncode == 0, run.stdout + run.stderr
    assets, scenarios = db.execute(
        "SELECT (SELECT count(*) FROM assets), (SELECT count(*) FROM scenarios)"
    ).fetchone()
    cells = db.execute("SELECT count(*) FROM impact_scores").fetchone()[0]
    assert cells == assets * scenarios == 60 * scenarios
    missing_growth = db.execute("SELECT count(*) FROM assets WHERE volatility IS NULL").fetchone()[
        0
    ]
    assert missing_growth == 0
    # Every stored cell agrees with a fresh recompute: running the matrix again changes nothing.
    before = db.execute("SELECT * FROM impact_scores ORDER BY 1, 2").fetchall()
    from finex_workers import domain

    assert domain.compute_matrix(db) == 0
    after = db.execute("SELECT * FROM impact_scores ORDER BY 1, 2").fetchall()
    assert before == after
