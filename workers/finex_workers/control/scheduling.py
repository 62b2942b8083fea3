"""Who moves due retries: taking over the scheduler lock of a scheduler that died.

RQ runs one scheduler per queue fleet-wide, elected by a lock (``rq:scheduler-lock:<queue>``)
that lives for interval + 60 s, and a scheduler without the lock tries again only every
``DEFAULT_SCHEDULER_FALLBACK_PERIOD`` (120 s). A SIGKILLed scheduler (or one that crashed when
Redis restarted, its lock restored from the AOF) therefore leaves retries waiting up to two
minutes. Here a scheduler without a lock looks at the holder every tick, and takes the lock over
when the holder is dead: its metadata hash is gone, it ran on this host and its pid is gone, or
its heartbeat (refreshed every interval) is older than :data:`STALE_SECONDS`.
"""

from __future__ import annotations

import socket
import time

import redis
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.utils import utcparse

from finex_workers.control import scripts
from finex_workers.infra.processes import pid_alive
from finex_workers.infra.redisconn import text

#: A scheduler whose heartbeat is this much older than now is dead (it beats every second).
STALE_SECONDS = 5.0


def holder_dead_reason(conn: redis.Redis, holder: str, now: float | None = None) -> str | None:
    """Why the scheduler named holder is dead, or None when it looks alive."""
    now = time.time() if now is None else now
    data = conn.hgetall(SCHEDULER_KEY_TEMPLATE % holder)
    if not data:
        return f"scheduler {holder} is gone (no metadata)"
    host = text(data.get(b"hostname") or b"")
    pid = int(data.get(b"pid") or 0)
    if host == socket.gethostname() and pid and not pid_alive(pid):
        return f"scheduler {holder} (pid {pid} on this host) is not running"
    beat = data.get(b"last_heartbeat")
    if beat:
        age = now - utcparse(text(beat)).timestamp()
        if age > STALE_SECONDS:
            return f"scheduler {holder} last beat {age:.0f}s ago"
    return None


def take_over_lock(conn: redis.Redis, queue: str, owner: str, ttl: int) -> str | None:
    """Take the queue's scheduler lock for owner if it is free or its holder is dead.

    Returns why it was taken ("free", or the holder's death), None if a live scheduler holds it.
    """
    key = RQScheduler.get_locking_key(queue)
    holder_raw = conn.get(key)
    holder = text(holder_raw) if holder_raw is not None else ""
    if holder == owner:
        return None
    reason = "free" if not holder else holder_dead_reason(conn, holder)
    if reason is None:
        return None
    taken = scripts.script(conn, "take_over_lock")(keys=[key], args=[holder, owner, ttl])
    return reason if taken else None
