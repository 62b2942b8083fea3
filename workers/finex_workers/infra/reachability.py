"""Connection failures said in one line: which service, which variable, which (redacted) URL.

The CLI's ``main()``, the supervisor's wait for Redis and the exporter's error page all turn a
driver's exception into the same sentence through :func:`describe`, so a user sees
``cannot reach Redis at REDIS_URL=redis://:***@cache:6379/0: Connection refused`` wherever the
problem shows, and never a traceback for what is a configuration or network problem.
"""

from __future__ import annotations

import psycopg
import redis
from psycopg import pq
from psycopg.conninfo import make_conninfo

from finex_workers.core.errors import ServiceRefusedError, ServiceUnreachableError
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


def outage_of(exc: BaseException, database_url: str | None = None) -> str | None:
    """ "PostgreSQL" or "Redis" when exc says that service is unreachable, else None.

    What the worker asks of a job's exception: an outage is nobody's job's fault, so the job
    goes back without using an attempt. Only connection-level failures can be (no SQLSTATE,
    class 08, or a server shutting down); a query error, a serialization failure or a deadlock
    is the job's own and keeps the retry policy.

    With database_url (the worker's, with the parameters its jobs' connections send), a
    PostgreSQL failure is an outage only if the service does not answer a new connection with
    those parameters, or refuses it (a configuration error: the worker then waits for a fix).
    A job whose own backend was terminated, while the server answers, is not in an outage.
    """
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return "Redis"
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        if state is None or state.startswith("08") or state in _PG_GONE:
            if database_url is None:
                return "PostgreSQL"
            try:
                check_postgres(database_url)
            except ServiceUnreachableError:
                return "PostgreSQL"
    return None


#: Seconds a check waits for PostgreSQL to answer.
CHECK_TIMEOUT = 3
#: The setting that adds the startup parameter PgBouncer and PostgreSQL <= 13 refuse.
_CHECK_SETTING = "FINEX_PG_CONNECTION_CHECK_MS"


def _answers(url: str) -> bool:
    """libpq's PQping: did a server answer at all (even to refuse us)? False when nothing
    answered, or the server said it is starting up, shutting down or recovering."""
    ping = pq.PGconn.ping(make_conninfo(url, connect_timeout=CHECK_TIMEOUT).encode())
    return ping in (pq.Ping.OK, pq.Ping.NO_ATTEMPT)


def _server_reason(exc: BaseException) -> str:
    """The server's own words from libpq's connection error, without libpq's preamble."""
    text = " ".join(str(exc).split())
    for marker in ("FATAL:", "ERROR:"):
        if marker in text:
            return text.rpartition(marker)[2].strip().rstrip(".")
    return _first_line(exc)


def _refusal(url: str, exc: BaseException) -> ServiceRefusedError:
    reason = _server_reason(exc)
    if "client_connection_check_interval" in url and ("options" in reason or "parameter" in reason):
        hint = (
            f"the worker sends options=-c client_connection_check_interval ({_CHECK_SETTING}); "
            f"set {_CHECK_SETTING}=0 behind PgBouncer or for PostgreSQL 13 and older"
        )
    else:
        hint = "check the user, password and database in DATABASE_URL, and the server's pg_hba.conf"
    return ServiceRefusedError("PostgreSQL", "DATABASE_URL", redact(url), reason, hint)


def check_postgres(url: str) -> None:
    """Open and close one PostgreSQL connection with url's parameters.

    Raises ServiceUnreachableError if the service does not answer (nothing listens, no reply
    within CHECK_TIMEOUT, starting up or shutting down), and its subclass ServiceRefusedError if
    it answers and refuses the login (user, password, database, a startup parameter).
    """
    failure: psycopg.OperationalError | None = None
    for _ in range(2):  # a server that answers a ping right after refusing: it may be back
        try:
            psycopg.connect(url, connect_timeout=CHECK_TIMEOUT).close()
        except psycopg.OperationalError as exc:
            failure = exc
        else:
            return
        if not _answers(url):
            raise ServiceUnreachableError(
                "PostgreSQL", "DATABASE_URL", redact(url), _first_line(failure)
            ) from None
    assert failure is not None
    raise _refusal(url, failure) from None
