"""The chaos tier: a fleet on its own restartable Redis (AOF) and PostgreSQL, faults, the ledger.

Unlike the session services of tests/conftest.py these servers are killed and restarted by the
tests, on the same port and data folder, so each test module gets its own. Sizes come from the
environment so ``make chaos`` can run bigger backlogs than ``make test``:

- ``FINEX_CHAOS_JOBS``: probe jobs per fault (default 40);
- ``FINEX_CHAOS_PG_OUTAGE``: seconds PostgreSQL stays down (default 60, as the issue asks).

Every test adds a row to the table printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from finex_workers.dev import localservices
from finex_workers.infra import migrate
from tests.chaos.ledger import ROWS, table

JOBS = int(os.environ.get("FINEX_CHAOS_JOBS", "40"))
PG_OUTAGE = float(os.environ.get("FINEX_CHAOS_PG_OUTAGE", "60"))


class Services:
    """A restartable Redis (AOF, everysec) and PostgreSQL on fixed loopback ports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.redis = localservices.start_redis(root / "redis", appendonly=True)
        # Durable settings: with synchronous_commit=off (the fast test settings) an immediate
        # stop loses the last commits, which the ledger rightly reports as lost jobs.
        self.pg = localservices.start_postgres(root / "pg")
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE chaos")
        self.database_url = f"postgresql://postgres@127.0.0.1:{self.pg.port}/chaos"
        migrate.migrate(self.database_url)

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def kill_redis(self) -> None:
        os.killpg(self.redis.process.pid, signal.SIGKILL)
        self.redis.process.wait()

    def start_redis(self) -> None:
        self.redis = localservices.start_redis(
            self.root / "redis", self.redis.port, appendonly=True
        )

    def stop_pg_immediate(self) -> None:
        """pg_ctl -m immediate: SIGQUIT, no checkpoint, crash recovery at the next start."""
        os.killpg(self.pg.process.pid, signal.SIGQUIT)
        self.pg.process.wait(30)

    def start_pg(self) -> None:
        self.pg = localservices.start_postgres(self.root / "pg", self.pg.port)

    def stop(self) -> None:
        localservices.stop_all([self.pg, self.redis])


@pytest.fixture(scope="module")
def chaos_services() -> Iterator[Services]:
    root = Path(tempfile.mkdtemp(prefix="finex-chaos-"))
    root.chmod(0o755)
    services = Services(root)
    yield services
    services.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def chaos_env(chaos_services: Services) -> dict[str, str]:
    conn = redis.Redis.from_url(chaos_services.redis_url)
    conn.flushall()
    conn.close()
    with psycopg.connect(chaos_services.database_url, autocommit=True) as db:
        db.execute("TRUNCATE finex_probes")
    return {
        "REDIS_URL": chaos_services.redis_url,
        "DATABASE_URL": chaos_services.database_url,
        "GROWTH_WORKER_CONCURRENCY": "2",
        "MATRIX_WORKER_CONCURRENCY": "1",
        "PROBABILITY_WORKER_CONCURRENCY": "1",
        "FINEX_RETRY_MAX": "2",
        "FINEX_RETRY_INTERVALS": "1",
        "FINEX_WORKER_TTL": "6",
    }


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if ROWS:
        terminalreporter.section("chaos: the ledger after each fault")
        terminalreporter.write_line(table(ROWS))


def monotonic() -> float:
    return time.monotonic()
