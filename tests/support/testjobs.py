"""Job functions only the tests enqueue: failures on demand, to drive retries and the DLQ."""

from __future__ import annotations

import os

import redis


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


def flaky_job(key: str, fail_times: int) -> int:
    """Fail the first fail_times calls for this key (counted in Redis), then succeed."""
    calls = int(_redis().incr(f"test:calls:{key}"))
    if calls <= fail_times:
        raise RuntimeError(f"flaky failure {calls} of {fail_times} for {key}")
    return calls


def always_fails(reason: str) -> None:
    raise RuntimeError(f"always fails: {reason}")


def held_job(key: str) -> int:
    """Record this run's pid (test:runs:<key>), then wait until test:release:<key> exists."""
    import time

    conn = _redis()
    runs = int(conn.rpush(f"test:runs:{key}", os.getpid()))
    deadline = time.monotonic() + 120
    while not conn.exists(f"test:release:{key}") and time.monotonic() < deadline:
        time.sleep(0.05)
    return runs


def kills_its_worker(key: str) -> None:
    """Record this run's pid (test:runs:<key>), then SIGKILL the process running it."""
    import signal

    _redis().rpush(f"test:runs:{key}", os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)
