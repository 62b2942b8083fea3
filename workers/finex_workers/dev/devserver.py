"""``make dev``: the whole fleet on this machine, with local Redis and PostgreSQL by default.

Uses REDIS_URL / DATABASE_URL when something answers there; otherwise starts redis-server and
postgres on loopback with their data under .data/ (git-ignored). Then migrates, seeds demo data
(once), starts the three queues' workers, enqueues a full recompute, shows progress until the
queues are idle, and keeps running with a periodic summary. Ctrl-C stops everything cleanly:
workers finish their jobs first, then the servers stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from finex_workers import control, domain
from finex_workers.core.names import QUEUE_NAMES
from finex_workers.core.settings import Settings
from finex_workers.dev import localservices
from finex_workers.infra import migrate
from finex_workers.infra.redisconn import redis_from_url
from finex_workers.runtime import recompute

#: Local servers' data, unless FINEX_DEV_DATA_DIR says otherwise (e.g. when the checkout is
#: under a folder the postgres user cannot enter).
DEFAULT_DATA_DIR = ".data"
DEV_REDIS_PORT = 6390
DEV_PG_PORT = 5440


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    return localservices.port_open(parts.hostname or "127.0.0.1", parts.port or default_port)


def _say(message: str) -> None:
    print(f"[finex dev] {message}", flush=True)


def _ensure_services(services: list[localservices.LocalService]) -> tuple[str, str]:
    """Return (redis_url, database_url), starting local servers for what is not reachable."""
    data_dir = Path(os.environ.get("FINEX_DEV_DATA_DIR", DEFAULT_DATA_DIR)).resolve()
    redis_url = os.environ.get("REDIS_URL", f"redis://127.0.0.1:{DEV_REDIS_PORT}/0")
    database_url = os.environ.get(
        "DATABASE_URL", f"postgresql://postgres@127.0.0.1:{DEV_PG_PORT}/finex"
    )
    if not _reachable(redis_url, 6379):
        port = urlsplit(redis_url).port or DEV_REDIS_PORT
        svc = localservices.start_redis(data_dir / "redis", port)
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


def run(*, assets: int, scenarios: int) -> int:
    """Run until Ctrl-C; returns the exit code."""
    services: list[localservices.LocalService] = []
    fleet: subprocess.Popen[bytes] | None = None
    try:
        redis_url, database_url = _ensure_services(services)
        # The fleet is a child process that reads its settings from its environment; this
        # process reads the same mapping, and its own environment stays as it was.
        env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": database_url}
        settings = Settings.from_env(env)
        settings.check_budget()

        applied = migrate.migrate(database_url)
        _say(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        with psycopg.connect(database_url, autocommit=True) as conn:
            if domain.asset_ids(conn, chunk=1):
                _say("demo data already present; keeping it")
            else:
                summary = domain.seed(conn, assets=assets, scenarios=scenarios)
                _say(f"seeded demo data: {summary}")

        _say(
            "starting workers: " + ", ".join(f"{q}={settings.concurrency[q]}" for q in QUEUE_NAMES)
        )
        fleet = subprocess.Popen(
            [sys.executable, "-m", "finex_workers.cli", "workers", "start"], env=env
        )
        rconn = redis_from_url(redis_url)
        started = time.monotonic()
        plan = recompute.enqueue_full(rconn, settings)
        _say(f"full recompute enqueued: {plan.created} jobs ({plan.deduplicated} already pending)")
        from finex_workers.console import ProgressBar

        recompute.wait_until_idle(rconn, progress=ProgressBar("recompute"))
        _say(f"full recompute done in {time.monotonic() - started:.1f}s")
        with psycopg.connect(database_url, autocommit=True) as db:
            row = db.execute("SELECT count(*), sum(weighted_impact) FROM impact_scores").fetchone()
        if row is not None:
            _say(f"impact_scores: {row[0]} rows, total probability-weighted impact {row[1]:,.0f}")
        _say("fleet is running; Ctrl-C to stop. Try: .venv/bin/finex workers status")
        while fleet.poll() is None:
            states = [control.queue_state(rconn, q) for q in QUEUE_NAMES]
            _say(
                " | ".join(
                    f"{s.queue}: {s.workers}w {s.waiting} waiting {s.active} active "
                    f"{s.completed} done {s.failed} dlq"
                    for s in states
                )
            )
            time.sleep(30)
        return fleet.returncode or 0
    except KeyboardInterrupt:
        _say("stopping: workers finish their running jobs first")
        return 0
    finally:
        # A second Ctrl-C must not abandon the servers half-way through shutting down.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if fleet is not None and fleet.poll() is None:
            fleet.send_signal(signal.SIGTERM)
            fleet.wait()
        localservices.stop_all(services)
