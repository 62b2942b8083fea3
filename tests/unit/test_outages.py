"""Which exceptions are outages (the job goes back, attempts intact) and which are the job's."""

from __future__ import annotations

import psycopg
import pytest
import redis
from psycopg import errors as pg_errors

from finex_workers.infra.reachability import outage_of


@pytest.mark.parametrize(
    ("exc", "service"),
    [
        (psycopg.OperationalError("connection refused"), "PostgreSQL"),
        (pg_errors.AdminShutdown("terminating connection"), "PostgreSQL"),
        (pg_errors.CannotConnectNow("the database system is starting up"), "PostgreSQL"),
        (pg_errors.ConnectionFailure("lost"), "PostgreSQL"),
        (redis.exceptions.ConnectionError("Connection refused"), "Redis"),
        (redis.exceptions.TimeoutError("Timeout reading"), "Redis"),
        (redis.exceptions.BusyLoadingError("loading"), "Redis"),
        (pg_errors.SerializationFailure("could not serialize"), None),
        (pg_errors.DeadlockDetected("deadlock"), None),
        (pg_errors.QueryCanceled("statement timeout"), None),
        (pg_errors.TooManyConnections("sorry, too many clients"), None),
        (redis.exceptions.ResponseError("WRONGTYPE"), None),
        (ValueError("bad"), None),
    ],
)
def test_outage_of(exc: BaseException, service: str | None) -> None:
    assert outage_of(exc) == service
