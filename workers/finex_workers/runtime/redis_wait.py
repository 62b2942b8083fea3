"""Waiting for Redis at start: a capped, growing delay and one clear line per attempt.

A worker fleet started before its Redis (a pod scheduled before the Redis pod is ready, a
laptop where Redis is not running) should wait, not crash-loop: the supervisor calls
:func:`wait_for_redis` before it forks anything, and again before it restarts a worker that
died while Redis was away, so a dead Redis costs one log line per attempt, not a traceback per
worker process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from finex_workers.core.errors import ServiceUnreachableError
from finex_workers.infra.reachability import check_redis

#: First delay between attempts and the cap, in seconds; the delay doubles per attempt.
BACKOFF = (1.0, 30.0)


def delays(first: float = BACKOFF[0], cap: float = BACKOFF[1]) -> Iterator[float]:
    """1, 2, 4, 8, 16, 30, 30, ... (pure, for the unit test)."""
    delay = first
    while True:
        yield min(delay, cap)
        delay = min(delay * 2, cap)


def wait_for_redis(
    url: str,
    log: logging.Logger,
    *,
    stopping: Callable[[], bool],
    sleep: Callable[[float], None] = time.sleep,
    backoff: tuple[float, float] = BACKOFF,
) -> bool:
    """Block until Redis answers a PING (True) or stopping() turns true (False)."""
    attempt = 0
    for delay in delays(*backoff):
        try:
            check_redis(url)
        except ServiceUnreachableError as exc:
            attempt += 1
            log.error("%s; retrying in %.0fs (attempt %d)", exc, delay, attempt)
        else:
            if attempt:
                log.info("Redis answers again after %d failed attempt(s)", attempt)
            return True
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if stopping():
                return False
            sleep(min(0.2, delay))
    return False  # pragma: no cover - delays() never ends
