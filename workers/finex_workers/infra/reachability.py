"""Connection failures said in one line: which service, which variable, which (redacted) URL.

The CLI's ``main()``, the supervisor's wait for Redis and the exporter's error page all turn a
driver's exception into the same sentence through :func:`describe`, so a user sees
``cannot reach Redis at REDIS_URL=redis://:***@cache:6379/0: Connection refused`` wherever the
problem shows, and never a traceback for what is a configuration or network problem.
"""

from __future__ import annotations

import psycopg
import redis

from finex_workers.core.errors import ServiceUnreachableError
from finex_workers.core.settings import Settings
from finex_workers.core.urls import redact

#: redis-py's failures that mean "the server is not there or refused us", not a bug of ours.
REDIS_FAILURES: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.AuthenticationError,
    redis.exceptions.ResponseError,
)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(exc).__name__


def describe(exc: BaseException, settings: Settings) -> ServiceUnreachableError | None:
    """The one-line error for a failure to reach Redis or PostgreSQL; None for anything else.

    A ResponseError counts only when it is about access (NOAUTH, WRONGPASS, NOPERM): other
    server replies are bugs and keep their traceback.
    """
    if isinstance(exc, ServiceUnreachableError):
        return exc
    if isinstance(exc, redis.exceptions.ResponseError) and not str(exc).startswith(
        ("NOAUTH", "WRONGPASS", "NOPERM", "invalid password")
    ):
        return None
    if isinstance(exc, REDIS_FAILURES):
        return redis_unreachable(settings.redis_url, exc)
    if isinstance(exc, psycopg.OperationalError):
        return ServiceUnreachableError(
            "PostgreSQL", "DATABASE_URL", redact(settings.database_url), _first_line(exc)
        )
    return None


def redis_unreachable(url: str, exc: BaseException) -> ServiceUnreachableError:
    """The one-line error for a Redis connection that failed with exc."""
    return ServiceUnreachableError("Redis", "REDIS_URL", redact(url), _first_line(exc))


def check_redis(url: str) -> None:
    """PING Redis once; raise ServiceUnreachableError if it does not answer."""
    from finex_workers.infra.redisconn import redis_from_url

    conn = redis_from_url(url)
    try:
        conn.ping()
    except REDIS_FAILURES as exc:
        raise redis_unreachable(url, exc) from None
    finally:
        conn.close()


#: SQLSTATEs that mean the server went away: admin_shutdown, crash_shutdown, cannot_connect_now.
_PG_GONE = ("57P01", "57P02", "57P03")


def outage_of(exc: BaseException) -> str | None:
    """ "PostgreSQL" or "Redis" when exc says that service is unreachable, else None.

    What the worker asks of a job's exception: an outage is nobody's job's fault, so the job
    goes back without using an attempt. Only connection-level failures count (no SQLSTATE, class
    08, or a server shutting down); a query error, a serialization failure or a deadlock is the
    job's own and keeps the retry policy.
    """
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return "Redis"
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        if state is None or state.startswith("08") or state in _PG_GONE:
            return "PostgreSQL"
    return None


def check_postgres(url: str) -> None:
    """Open and close one PostgreSQL connection; raise ServiceUnreachableError if it fails."""
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        raise ServiceUnreachableError(
            "PostgreSQL", "DATABASE_URL", redact(url), _first_line(exc)
        ) from None
