"""Redis clients and replies: one way to connect, one way to read a reply as text.

Every process (workers, scheduler, CLI, exporter, operator) connects through
:func:`redis_from_url`, so a ``redis+sentinel://`` URL (core/urls.py) works everywhere: the
client asks the Sentinels for the current master, and after a failover its next connection
goes to the new one (redis-py's SentinelConnectionPool; a demoted master's READONLY reply
counts as a lost connection). The workers treat the failover's few seconds as an outage.
"""

from __future__ import annotations

import logging

import redis
from redis.sentinel import Sentinel
from rq import Queue

from finex_workers.core.names import check_queue_name
from finex_workers.core.urls import SENTINEL_SCHEME, parse_sentinel_url

#: Seconds to connect to Redis or to a Sentinel, and for a Sentinel to answer.
CONNECT_TIMEOUT = 5


def redis_from_url(url: str) -> redis.Redis:
    """A Redis client with timeouts, so a network split surfaces as an error and not a hang."""
    if url.startswith(f"{SENTINEL_SCHEME}://"):
        target = parse_sentinel_url(url)
        sentinel = Sentinel(
            list(target.sentinels),
            sentinel_kwargs={
                "password": target.sentinel_password,
                "socket_timeout": CONNECT_TIMEOUT,
                "socket_connect_timeout": CONNECT_TIMEOUT,
            },
        )
        master: redis.Redis = sentinel.master_for(
            target.service,
            db=target.db,
            username=target.username,
            password=target.password,
            socket_connect_timeout=CONNECT_TIMEOUT,
            health_check_interval=30,
        )
        return master
    return redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT, health_check_interval=30
    )


def eviction_warning(conn: redis.Redis) -> str | None:
    """A warning when Redis may evict keys: an eviction silently drops queued jobs.

    Read from INFO (CONFIG GET is often disabled on managed Redis). None when the policy is
    noeviction or cannot be read.
    """
    try:
        policy = str(conn.info("memory").get("maxmemory_policy", ""))
    except redis.RedisError:
        return None
    if not policy or policy == "noeviction":
        return None
    return (
        f"Redis maxmemory-policy is {policy}: when memory is full Redis deletes keys, and a "
        "deleted job is lost without a trace. Set maxmemory-policy noeviction "
        "(docs/install.md, Redis settings)"
    )


def warn_if_evicting(conn: redis.Redis, log: logging.Logger) -> None:
    """Log eviction_warning's text, if any, once at start-up."""
    warning = eviction_warning(conn)
    if warning:
        log.warning("%s", warning)


def get_queue(name: str, connection: redis.Redis) -> Queue:
    """The RQ queue object for a known queue name."""
    return Queue(check_queue_name(name), connection=connection)


def text(value: object) -> str:
    """A Redis reply (bytes, str or number) as str; redis-py types its replies loosely."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
