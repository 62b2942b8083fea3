"""Redis clients and replies: one way to connect, one way to read a reply as text."""

from __future__ import annotations

import redis
from rq import Queue

from finex_workers.core.names import check_queue_name


def redis_from_url(url: str) -> redis.Redis:
    """A Redis client with timeouts, so a network split surfaces as an error and not a hang."""
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def get_queue(name: str, connection: redis.Redis) -> Queue:
    """The RQ queue object for a known queue name."""
    return Queue(check_queue_name(name), connection=connection)


def text(value: object) -> str:
    """A Redis reply (bytes, str or number) as str; redis-py types its replies loosely."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
