"""Job functions only the database-outage tests enqueue: they misbehave in the database.

Each goes through the production database path (``runtime.jobs.in_database``), so what the
tests prove about timeouts, cancels and outage classification holds for the real jobs.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import redis

from finex_workers.runtime.jobs import in_database


def _calls(key: str) -> int:
    """How many times this job body has started, counted in Redis (attempt 1, 2, ...)."""
    return int(redis.Redis.from_url(os.environ["REDIS_URL"]).incr(f"test:calls:{key}"))


def terminate_own_backend(key: str) -> None:
    """Kill this job's own PostgreSQL backend (57P01 admin_shutdown), as an admin would."""
    _calls(key)
    in_database(lambda conn: conn.execute("SELECT pg_terminate_backend(pg_backend_pid())"))


def lock_then_sleep(key: str, seconds: float) -> int:
    """Take the row lock of finex_probes[key]; on the first attempt only, sleep in SQL holding it.

    The retry takes the same row lock and returns at once, so it is only slow when the first
    attempt's transaction still holds the lock.
    """
    attempt = _calls(key)

    def work(conn: Any) -> int:
        with conn.transaction():
            conn.execute(
                "INSERT INTO finex_probes (probe_id, queue, runs) VALUES (%s, 'test', 1) "
                "ON CONFLICT (probe_id) DO UPDATE SET runs = finex_probes.runs + 1",
                (key,),
            )
            if attempt == 1:
                conn.execute("SELECT pg_sleep(%s)", (seconds,))
        return attempt

    return int(in_database(work))


def never_returns_to_python(key: str, seconds: float) -> int:
    """On the first attempt, block SIGALRM and sleep: RQ's timeout can never interrupt it.

    What a job stuck in C code looks like to the worker (a C extension that never returns).
    """
    attempt = _calls(key)
    if attempt == 1:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(seconds)
    return attempt


def redis_error_forever(key: str) -> None:
    """Raise what a lost Redis connection raises, while Redis answers: it looks like an outage
    every time. Stands for any failure the worker keeps taking for an outage."""
    _calls(key)
    raise redis.exceptions.ConnectionError("simulated: connection lost")
