"""Who moves due retries: taking over the scheduler lock of a scheduler that died.

RQ runs one scheduler per queue fleet-wide, elected by a lock (``rq:scheduler-lock:<queue>``)
that lives for interval + 60 s, and a scheduler without the lock tries again only every
``DEFAULT_SCHEDULER_FALLBACK_PERIOD`` (120 s). A SIGKILLed scheduler (or one that crashed when
Redis restarted, its lock restored from the AOF) therefore leaves retries waiting up to two
minutes. Here a scheduler without a lock looks at the holder every tick, and takes the lock over
when the holder is dead: its metadata hash is gone, it ran on this host and its pid is gone, or
it has not refreshed its lock for :data:`STALE_SECONDS`. That last one is judged inside Redis,
on Redis's clock (``lua/take_over_lock.lua``): the heartbeat time a holder writes comes from its
own host's clock, and a slow clock there would make a live holder look dead here.

RQ's scheduler moves due jobs in two steps (read, then enqueue in a pipeline); here one script
does it (``lua/move_due.lua``), so two schedulers never both enqueue one job.
"""

from __future__ import annotations

import redis
from rq.job import Job
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.utils import now as utcnow
from rq.utils import utcformat

from finex_workers.control import scripts
from finex_workers.infra.processes import pid_alive, pid_namespace
from finex_workers.infra.redisconn import get_queue, text

#: A scheduler whose heartbeat is this much older than now is dead (it beats every second).
STALE_SECONDS = 5.0


def holder_dead_reason(conn: redis.Redis, holder: str) -> str | None:
    """Why the scheduler named holder is known dead, or None when only its beat can tell."""
    data = conn.hgetall(SCHEDULER_KEY_TEMPLATE % holder)
    if not data:
        return f"scheduler {holder} is gone (no metadata)"
    # Its pid means something here only in the same PID namespace, which FinexScheduler
    # records (not by hostname: a debug container shares it, not the PIDs). Any other holder is
    # judged by its lock's staleness alone.
    same_pids = text(data.get(b"finex_pidns") or b"") == pid_namespace()
    pid = int(data.get(b"pid") or 0)
    if same_pids and pid and not pid_alive(pid):
        return f"scheduler {holder} (pid {pid} on this host) is not running"
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
    stale = "" if reason else str(STALE_SECONDS)
    taken = scripts.script(conn, "take_over_lock")(keys=[key], args=[holder, owner, ttl, stale])
    if not taken:
        return None
    return reason or f"scheduler {holder} has not refreshed its lock for {STALE_SECONDS:.0f}s"


def move_due_jobs(conn: redis.Redis, queue: str, limit: int = 1000) -> list[str]:
    """Move the queue's due scheduled jobs (retries, enqueue_in/at) onto it, atomically."""
    q = get_queue(queue, conn)
    moved = scripts.script(conn, "move_due")(
        keys=[q.scheduled_job_registry.key, q.key],
        args=[Job.redis_job_namespace_prefix, utcformat(utcnow()), limit],
    )
    return [text(m) for m in moved]
