"""The job process's PostgreSQL connection: opened on first use after fork, never at import.

Each worker process holds at most one connection, which is what the connection budget counts.
Retryable failures (serialization failure, deadlock, a dropped connection) are retried here with
a short backoff; every unit of work we run is an idempotent transaction, so a retry after an
unknown commit outcome is safe.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg import errors as pg_errors

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE: tuple[type[Exception], ...] = (
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    psycopg.OperationalError,
)
ATTEMPTS = 4
#: If a worker is SIGKILLed mid-transaction, its backend notices the dead client within 2s and
#: rolls back, releasing row locks, instead of holding them until its current statement ends.
SESSION_OPTIONS = "-c client_connection_check_interval=2000"

_conn: psycopg.Connection[tuple[object, ...]] | None = None
_conn_pid: int | None = None


def connection(conninfo: str) -> psycopg.Connection[tuple[object, ...]]:
    """This process's connection, (re)opened if absent, broken, or inherited across a fork."""
    global _conn, _conn_pid  # noqa: PLW0603 - one connection per process is the design
    if _conn is None or _conn.closed or _conn_pid != os.getpid():
        _conn = psycopg.connect(
            conninfo, autocommit=True, application_name="finex-worker", options=SESSION_OPTIONS
        )
        _conn_pid = os.getpid()
    return _conn


def close() -> None:
    """Close this process's connection, if it opened one."""
    global _conn  # noqa: PLW0603
    if _conn is not None and _conn_pid == os.getpid():
        _conn.close()
    _conn = None


def run(conninfo: str, work: Callable[[psycopg.Connection[tuple[object, ...]]], T]) -> T:
    """Run work(conn), retrying retryable database errors with backoff (0.1s, 0.2s, 0.4s)."""
    for attempt in range(1, ATTEMPTS + 1):
        conn = connection(conninfo)
        try:
            return work(conn)
        except RETRYABLE as exc:
            if attempt == ATTEMPTS:
                raise
            log.warning("retryable database error (attempt %d/%d): %s", attempt, ATTEMPTS, exc)
            if isinstance(exc, psycopg.OperationalError) and not isinstance(
                exc, pg_errors.SerializationFailure | pg_errors.DeadlockDetected
            ):
                close()
            time.sleep(0.1 * 2 ** (attempt - 1))
    raise AssertionError("unreachable")
