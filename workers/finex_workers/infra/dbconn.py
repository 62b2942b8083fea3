"""The job process's PostgreSQL connection: opened on first use after fork, never at import.

Each worker process holds at most one connection, which is what the connection budget counts.
Its parameters (application name, connect timeout, the dead-client check) travel in the URL
the worker passes, ``Settings.worker_database_url``, so a reachability check sends exactly the
same ones. Retryable failures (serialization failure, deadlock, a dropped connection) are
retried here with a short backoff; every unit of work we run is an idempotent transaction, so a
retry after an unknown commit outcome is safe.

A job's time limit reaches the server: :func:`run` holds the work in one transaction whose
``statement_timeout``, ``lock_timeout`` and ``idle_in_transaction_session_timeout`` are the time
the job has left, set with ``set_config(..., true)`` (``SET LOCAL``: they end with the
transaction, so a pooler's shared server connection keeps none of them). And when the work is
interrupted while a statement runs (RQ's timeout, a signal), the statement is cancelled and the
connection closed there and then: its locks go at once, not when the statement would have ended.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE: tuple[type[Exception], ...] = (
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    psycopg.OperationalError,
)
#: OperationalErrors that say the job's time is up (statement_timeout, lock_timeout): retrying
#: within the job cannot help, the time budget is spent.
OUT_OF_TIME: tuple[type[Exception], ...] = (pg_errors.QueryCanceled, pg_errors.LockNotAvailable)
ATTEMPTS = 4
#: Longest wait for the server to acknowledge a cancel request, seconds.
CANCEL_TIMEOUT = 3.0
#: The job's time left, in ms, as three transaction-local limits, in one round trip.
_LIMITS = (
    "SELECT set_config('statement_timeout', %(ms)s, true), "
    "set_config('lock_timeout', %(ms)s, true), "
    "set_config('idle_in_transaction_session_timeout', %(ms)s, true)"
)

_conn: psycopg.Connection[tuple[object, ...]] | None = None
_conn_pid: int | None = None


def connection(conninfo: str, *, prepare: bool = True) -> psycopg.Connection[tuple[object, ...]]:
    """This process's connection, (re)opened if absent, broken, or inherited across a fork.

    prepare=False: psycopg never prepares a statement (PgBouncer < 1.21, transaction pooling).
    """
    global _conn, _conn_pid  # noqa: PLW0603 - one connection per process is the design
    if _conn is None or _conn.closed or _conn_pid != os.getpid():
        _conn = psycopg.connect(conninfo, autocommit=True)
        if not prepare:
            _conn.prepare_threshold = None
        _conn_pid = os.getpid()
    return _conn


def close() -> None:
    """Close this process's connection, if it opened one."""
    global _conn  # noqa: PLW0603
    if _conn is not None and _conn_pid == os.getpid():
        _conn.close()
    _conn = None


def abandon(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Cancel the statement the connection runs, if any, and close it: its locks go now."""
    if conn.closed:
        return
    if conn.pgconn.transaction_status == TransactionStatus.ACTIVE:
        try:
            conn.cancel_safe(timeout=CANCEL_TIMEOUT)
        except Exception as exc:
            log.warning("could not cancel the running statement: %s", exc)
    conn.close()


def _bounded(
    conn: psycopg.Connection[tuple[object, ...]],
    work: Callable[[psycopg.Connection[tuple[object, ...]]], T],
    deadline: float | None,
) -> T:
    with conn.transaction():
        try:
            if deadline is not None:
                ms = max(1, int((deadline - time.monotonic()) * 1000))
                conn.execute(_LIMITS, {"ms": str(ms)})
            return work(conn)
        except BaseException:
            # Interrupted mid-statement (a timeout, a signal): a rollback cannot be sent while
            # the statement runs; cancel it and close, which also ends the transaction.
            if conn.pgconn.transaction_status == TransactionStatus.ACTIVE:
                abandon(conn)
            raise


def run(
    conninfo: str,
    work: Callable[[psycopg.Connection[tuple[object, ...]]], T],
    *,
    deadline: float | None = None,
    prepare: bool = True,
) -> T:
    """Run work(conn) in one transaction, retrying retryable errors (0.1s, 0.2s, 0.4s).

    deadline (``time.monotonic()``): when the job's time is up; the server enforces it too.
    """
    for attempt in range(1, ATTEMPTS + 1):
        conn = connection(conninfo, prepare=prepare)
        try:
            return _bounded(conn, work, deadline)
        except OUT_OF_TIME:
            raise
        except RETRYABLE as exc:
            if attempt == ATTEMPTS:
                raise
            log.warning("retryable database error (attempt %d/%d): %s", attempt, ATTEMPTS, exc)
            if isinstance(exc, psycopg.OperationalError) and not isinstance(
                exc, pg_errors.SerializationFailure | pg_errors.DeadlockDetected
            ):
                close()
            time.sleep(0.1 * 2 ** (attempt - 1))
        except BaseException:
            if not conn.closed and conn.pgconn.transaction_status == TransactionStatus.ACTIVE:
                abandon(conn)  # interrupted before the transaction block took over
            raise
    raise AssertionError("unreachable")
