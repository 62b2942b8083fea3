"""Shared fixtures: a real Redis and a real PostgreSQL on free loopback ports.

One server of each runs for the whole session. Each test gets a flushed Redis and its own
database, cloned from a migrated template, so tests never see each other's rows or keys.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from finex_workers.dev import localservices
from finex_workers.infra import migrate

_db_counter = itertools.count()

#: The Kubernetes fixtures of the e2e and node tiers, one instance per session for both.
pytest_plugins = ("tests.support.k8s_fixtures",)


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: that is mode 0700 and root-owned, and postgres runs as its own user.
    path = Path(tempfile.mkdtemp(prefix="finex-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(services_dir: Path) -> Iterator[localservices.LocalService]:
    svc = localservices.start_redis(services_dir / "redis")
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def pg_server(services_dir: Path) -> Iterator[localservices.LocalService]:
    svc = localservices.start_postgres(services_dir / "pg", max_connections=300, fast_unsafe=True)
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def pgbouncer_server(
    services_dir: Path, pg_server: localservices.LocalService
) -> Iterator[localservices.LocalService]:
    """Debian's PgBouncer in front of the session's PostgreSQL, as installed: transaction
    pooling and no ignore_startup_parameters, so it refuses a client that sends ``options``."""
    svc = localservices.start_pgbouncer(services_dir / "pgbouncer", pg_server.port)
    yield svc
    svc.stop()


@pytest.fixture
def pgbouncer_url(database_url: str, pgbouncer_server: localservices.LocalService) -> str:
    """This test's database, reached through PgBouncer."""
    return (
        f"postgresql://postgres@127.0.0.1:{pgbouncer_server.port}/{database_url.rsplit('/', 1)[1]}"
    )


def _db_url(server: localservices.LocalService, dbname: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{server.port}/{dbname}"


@pytest.fixture(scope="session")
def pg_template(pg_server: localservices.LocalService) -> str:
    """Name of a database with every migration applied; tests clone it."""
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE finex_template")
    migrate.migrate(_db_url(pg_server, "finex_template"))
    return "finex_template"


@pytest.fixture
def database_url(
    pg_server: localservices.LocalService, pg_template: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A fresh, migrated database for this test; DATABASE_URL points at it."""
    name = f"t{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE {pg_template}')
    url = _db_url(pg_server, name)
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_database_url(pg_server: localservices.LocalService) -> Iterator[str]:
    """A database with no migrations applied, for testing the migrator itself."""
    name = f"e{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _db_url(pg_server, name)
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit connection to this test's database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def redis_url(redis_server: localservices.LocalService, monkeypatch: pytest.MonkeyPatch) -> str:
    """The session's Redis, flushed for this test; REDIS_URL points at it."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    return redis_server.url


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def fleet_env(redis_url: str, database_url: str) -> dict[str, str]:
    """Environment for worker subprocesses: this test's Redis and database, fast timings."""
    return {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "MATRIX_WORKER_CONCURRENCY": "1",
        "GROWTH_WORKER_CONCURRENCY": "1",
        "PROBABILITY_WORKER_CONCURRENCY": "1",
        "FINEX_RETRY_MAX": "2",
        "FINEX_RETRY_INTERVALS": "0",
        "FINEX_WORKER_TTL": "6",
    }


@pytest.fixture
def settings(fleet_env: dict[str, str]) -> object:
    """Settings as the fleet's processes see them (what enqueues in the test should use)."""
    from finex_workers.core.settings import Settings

    return Settings.from_env(fleet_env)


@pytest.fixture
def start_fleet(fleet_env: dict[str, str]) -> Iterator[object]:
    """start_fleet(queues, burst=, args=, **env_overrides) -> Fleet; all stopped after the test.

    args are extra `finex workers start` arguments (e.g. --metrics-port).
    """
    from tests.support.fleet import Fleet

    fleets: list[Fleet] = []

    def start(
        queues: list[str], burst: bool = False, args: tuple[str, ...] = (), **overrides: str
    ) -> Fleet:
        fleet = Fleet(queues, {**fleet_env, **overrides}, burst=burst, args=args)
        fleets.append(fleet)
        return fleet

    yield start
    for fleet in fleets:
        fleet.close()
