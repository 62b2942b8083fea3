"""The three queues and the Redis keys we add beside RQ's own.

Jobs live in standard RQ structures (``rq:queue:<name>``, ``rq:job:<id>``, the registries), so
``rq info`` and rq-dashboard keep working. Our own state sits under ``finex:``.
"""

from __future__ import annotations

from typing import Final, Literal

import redis
from rq import Queue

QueueName = Literal["matrix", "growth", "probability"]
QUEUE_NAMES: Final[tuple[QueueName, ...]] = ("matrix", "growth", "probability")


def check_queue_name(name: str) -> QueueName:
    """Return name as a QueueName, or raise ValueError listing the known queues."""
    for known in QUEUE_NAMES:
        if name == known:
            return known
    raise ValueError(f"unknown queue {name!r}; known queues: {', '.join(QUEUE_NAMES)}")


def paused_key(queue: str) -> str:
    """Present while the queue is paused; the value says who paused it and when."""
    return f"finex:paused:{queue}"


def stats_key(queue: str) -> str:
    """Hash of lifetime counters (completed, failed, dead_lettered, retried) for the queue."""
    return f"finex:stats:{queue}"


def dedup_lock_key(job_id: str) -> str:
    """Short-lived lock that makes check-then-enqueue of one job id atomic across clients."""
    return f"finex:dedup-lock:{job_id}"


def get_queue(name: str, connection: redis.Redis) -> Queue:
    """The RQ queue object for a known queue name."""
    return Queue(check_queue_name(name), connection=connection)


def redis_from_url(url: str) -> redis.Redis:
    """A Redis client with timeouts, so a network split surfaces as an error and not a hang."""
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def text(value: object) -> str:
    """A Redis reply (bytes, str or number) as str; redis-py types its replies loosely."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
