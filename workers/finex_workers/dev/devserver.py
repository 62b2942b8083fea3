"""``make dev``: the whole fleet on this machine, with local Redis and PostgreSQL by default.

Uses REDIS_URL / DATABASE_URL when something answers there; otherwise starts redis-server and
postgres on loopback with their data under .data/ (git-ignored). Then migrates, seeds demo data
(once), starts the three queues' workers, enqueues a full recompute, shows progress until the
queues are idle, and keeps running with a periodic summary. Ctrl-C stops everything cleanly:
workers finish their jobs first, then the servers stop. With no job running that takes a second
or two; while jobs run, it says every few seconds which ones it waits for (a second Ctrl-C
reaches the workers too and stops them at once: their jobs are abandoned, and the stuck-job
sweep of the next start recovers them).

The terminal is kept for progress and summaries: the workers' log goes to
``<data dir>/workers.log``, whose path is printed. The servers' URLs are printed as ``export``
lines and written to ``<data dir>/dev.env`` (``devstate``), which the ``finex`` command reads in
another shell when REDIS_URL and DATABASE_URL are unset.

The progress has a stable total: first the growth and probability jobs the full recompute
enqueued (known up front), then the matrix jobs they enqueued as follow-ups (known, and fixed,
once the first wave is done), each as done = total - still outstanding.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import psycopg
import redis

from finex_workers import control, domain
from finex_workers.console import ProgressBar
from finex_workers.core.names import QUEUE_NAMES
from finex_workers.core.settings import Settings
from finex_workers.dev import devstate, localservices
from finex_workers.infra import migrate
from finex_workers.infra.redisconn import redis_from_url
from finex_workers.infra.rqworkers import registered_workers
from finex_workers.runtime import recompute

DEV_REDIS_PORT = 6390
DEV_PG_PORT = 5440
#: A stopping fleet with no running job exits within about a second; after this long, and then
#: every STOP_REPORT_EVERY seconds, Ctrl-C says what it waits for.
STOP_REPORT_AFTER = 1.0
STOP_REPORT_EVERY = 5.0
#: Running jobs named per line while stopping; the rest are counted.
STOP_REPORT_JOBS = 5


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    return localservices.port_open(parts.hostname or "127.0.0.1", parts.port or default_port)


def _say(message: str) -> None:
    print(f"[finex dev] {message}", flush=True)


def _ensure_services(services: list[localservices.LocalService]) -> tuple[str, str]:
    """Return (redis_url, database_url), starting local servers for what is not reachable."""
    data_dir = devstate.data_dir()
    redis_url = os.environ.get("REDIS_URL", f"redis://127.0.0.1:{DEV_REDIS_PORT}/0")
    database_url = os.environ.get(
        "DATABASE_URL", f"postgresql://postgres@127.0.0.1:{DEV_PG_PORT}/finex"
    )
    if not _reachable(redis_url, 6379):
        port = urlsplit(redis_url).port or DEV_REDIS_PORT
        svc = localservices.start_redis(data_dir / "redis", port, appendonly=True)
        services.append(svc)
        _say(f"started redis-server on 127.0.0.1:{port} (data in {data_dir}/redis)")
    if not _reachable(database_url, 5432):
        port = urlsplit(database_url).port or DEV_PG_PORT
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o755)
        svc = localservices.start_postgres(data_dir / "postgres", port)
        services.append(svc)
        _say(f"started postgres on 127.0.0.1:{port} (data in {data_dir}/postgres)")
        dbname = urlsplit(database_url).path.lstrip("/") or "finex"
        with psycopg.connect(svc.url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{dbname}"')
    return redis_url, database_url


def _wait_idle(conn: redis.Redis, queues: Sequence[str], total: int, bar: ProgressBar) -> None:
    """Draw done/total (total fixed) until the queues are idle for two polls in a row."""
    done = 0
    idle_polls = 0
    while idle_polls < 2:
        left = recompute.outstanding(conn, queues)
        done = max(done, min(total, total - left))
        idle_polls = idle_polls + 1 if left == 0 else 0
        bar(total if idle_polls >= 2 else done, total)
        if idle_polls < 2:
            time.sleep(0.5)


def _show_recompute(conn: redis.Redis, plan: recompute.Plan, matrix_completed: int) -> None:
    """Two bars with stable totals: the first wave, then the matrix follow-ups.

    matrix_completed is the matrix queue's completed count before the recompute was enqueued.
    """
    first_wave = ("growth", "probability")
    _wait_idle(conn, first_wave, plan.created + plan.deduplicated, ProgressBar("growth+prob"))
    pending = recompute.outstanding(conn, ["matrix"])
    # Follow-ups that already completed during the first wave count as done.
    done = control.queue_state(conn, "matrix").completed - matrix_completed
    _wait_idle(conn, ["matrix"], max(0, done) + pending, ProgressBar("matrix     "))


def _summary(conn: redis.Redis) -> str:
    parts = []
    for s in (control.queue_state(conn, q) for q in QUEUE_NAMES):
        paused = " PAUSED" if s.paused else ""
        parts.append(
            f"{s.queue}{paused}: {s.workers}w {s.waiting} waiting {s.active} active "
            f"{s.completed} done {s.failed} dlq"
        )
    return " | ".join(parts)


def _prepare_database(database_url: str, *, assets: int, scenarios: int) -> None:
    applied = migrate.migrate(database_url)
    _say(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
    with psycopg.connect(database_url, autocommit=True) as conn:
        if domain.asset_ids(conn, chunk=1):
            _say("demo data already present; keeping it")
        else:
            summary = domain.seed(conn, assets=assets, scenarios=scenarios)
            _say(f"seeded demo data: {summary}")


def _announce(urls: dict[str, str]) -> None:
    """Say where the servers are, for another shell, and record it for the ``finex`` command."""
    state_file = devstate.write(devstate.data_dir(), urls)
    _say(f"for another shell (or `source {state_file}`):")
    for line in devstate.export_lines(urls):
        print(f"    {line}", flush=True)
    _say(
        "fleet is running; Ctrl-C to stop. Try: .venv/bin/finex workers status "
        "(in this checkout it finds these servers by itself)"
    )


def _running_jobs(conn: redis.Redis) -> list[str]:
    """``<queue> <job id> (<n>s)`` for every job a live worker runs now."""
    out = []
    for queue in QUEUE_NAMES:
        for w in registered_workers(conn, queue):
            if w.alive and w.current_job:
                age = "" if w.job_age_seconds is None else f" ({w.job_age_seconds:.0f}s)"
                out.append(f"{queue} {w.current_job}{age}")
    return out


def _waiting_for(conn: redis.Redis | None) -> str:
    """One line: what a stopping fleet still waits for."""
    try:
        jobs = _running_jobs(conn) if conn is not None else []
    except redis.RedisError as exc:
        return f"waiting for the workers to exit (cannot list their jobs: {exc})"
    if not jobs:
        return "waiting for the workers to exit (no job is running)"
    shown = ", ".join(jobs[:STOP_REPORT_JOBS])
    if len(jobs) > STOP_REPORT_JOBS:
        shown += f" and {len(jobs) - STOP_REPORT_JOBS} more"
    return (
        f"waiting for {len(jobs)} running job(s) to finish: {shown}; "
        "Ctrl-C again stops them now (the next start recovers them)"
    )


def _stop_fleet(fleet: subprocess.Popen[bytes], conn: redis.Redis | None) -> None:
    """Warm-stop the supervisor and wait for it, saying what it waits for while jobs run."""
    fleet.send_signal(signal.SIGTERM)  # the terminal's SIGINT may have reached it already
    report_at = time.monotonic() + STOP_REPORT_AFTER
    while True:
        try:
            fleet.wait(timeout=max(0.0, report_at - time.monotonic()))
            return
        except subprocess.TimeoutExpired:
            _say(_waiting_for(conn))
            report_at = time.monotonic() + STOP_REPORT_EVERY


def run(*, assets: int, scenarios: int) -> int:
    """Run until Ctrl-C; returns the exit code."""
    services: list[localservices.LocalService] = []
    fleet: subprocess.Popen[bytes] | None = None
    rconn: redis.Redis | None = None
    data_dir = devstate.data_dir()
    try:
        redis_url, database_url = _ensure_services(services)
        # The fleet is a child process that reads its settings from its environment; this
        # process reads the same mapping, and its own environment stays as it was.
        env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": database_url}
        settings = Settings.from_env(env)
        settings.check_budget()

        _prepare_database(database_url, assets=assets, scenarios=scenarios)

        log_path = data_dir / "workers.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        _say(
            "starting workers: "
            + ", ".join(f"{q}={settings.concurrency[q]}" for q in QUEUE_NAMES)
            + f"; their log: {log_path}"
        )
        with log_path.open("ab") as log_file:
            fleet = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "finex_workers.cli",
                    "workers",
                    "start",
                    "--respawn-stopped",
                ],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        rconn = redis_from_url(redis_url)
        started = time.monotonic()
        matrix_completed = control.queue_state(rconn, "matrix").completed
        plan = recompute.enqueue_full(rconn, settings)
        _say(f"full recompute enqueued: {plan.created} jobs ({plan.deduplicated} already pending)")
        _show_recompute(rconn, plan, matrix_completed)
        _say(f"full recompute done in {time.monotonic() - started:.1f}s")
        with psycopg.connect(database_url, autocommit=True) as db:
            row = db.execute("SELECT count(*), sum(weighted_impact) FROM impact_scores").fetchone()
        if row is not None and row[1] is not None:
            _say(f"impact_scores: {row[0]} rows, total probability-weighted impact {row[1]:,.0f}")
        _announce({"REDIS_URL": redis_url, "DATABASE_URL": database_url})
        while fleet.poll() is None:
            _say(_summary(rconn))
            for _ in range(300):
                if fleet.poll() is not None:
                    break
                time.sleep(0.1)
        _say(f"the workers exited with {fleet.returncode}; see {log_path}")
        return fleet.returncode or 0
    except KeyboardInterrupt:
        _say("stopping: workers finish their running jobs first")
        return 0
    finally:
        # A second Ctrl-C must not abandon the servers half-way through shutting down.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        devstate.remove(data_dir)
        if fleet is not None and fleet.poll() is None:
            _stop_fleet(fleet, rconn)
        localservices.stop_all(services)
