"""Read models: a queue's runbook numbers, its live workers and its running jobs.

Every count is O(1) per queue, whatever the number of jobs, so the exporter, ``finex workers
status`` and the operator can read it every second.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import redis
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.worker import BaseWorker

from finex_workers.control import pausing
from finex_workers.core.keys import paused_key, stats_key
from finex_workers.infra.redisconn import get_queue
from finex_workers.infra.rqkeys import active_bounds
from finex_workers.infra.rqworkers import with_listeners


@dataclass(frozen=True)
class QueueState:
    """The runbook's six numbers for one queue, plus its live workers and DLQ size."""

    queue: str
    paused: bool
    waiting: int
    active: int
    delayed: int
    failed: int
    completed: int
    workers: int
    #: Jobs returned to the queue because PostgreSQL or Redis was down (no attempt used).
    outages: int = 0
    #: The last such outage: "<service> at <ISO time>", or "".
    last_outage: str = ""
    #: Who holds the pause (control.Holder names, sorted); () when not paused.
    holds: tuple[str, ...] = ()
    #: Seconds since the oldest hold began; 0.0 when not paused (QueuePausedTooLong's metric).
    paused_seconds: float = 0.0
    #: Jobs quarantined in the DLQ (they crashed their worker max_crashes times), lifetime.
    quarantined: int = 0
    #: The last one: "<job id> (<kind>: <detail>)", or "".
    last_quarantined: str = ""

    @property
    def demand(self) -> int:
        """Jobs that need a worker now or soon: waiting + active + delayed (scheduled retries).

        What the operator's autoscaler and an external one (finex_queue_demand) scale on; the
        queue list alone misses the jobs in flight and those coming back.
        """
        return self.waiting + self.active + self.delayed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def queue_state(conn: redis.Redis, queue: str) -> QueueState:
    """Counts from Redis in one pipeline: O(1) per queue, whatever the number of jobs."""
    q = get_queue(queue, conn)
    pipe = conn.pipeline(transaction=False)
    pipe.exists(paused_key(queue))
    pipe.llen(q.key)
    pipe.zcount(StartedJobRegistry(queue, conn).key, *active_bounds(time.time()))
    pipe.zcard(ScheduledJobRegistry(queue, conn).key)
    pipe.zcard(DeferredJobRegistry(queue, conn).key)
    pipe.zcard(FailedJobRegistry(queue, conn).key)
    pipe.hmget(
        stats_key(queue), ["completed", "outages", "last_outage", "quarantined", "last_quarantined"]
    )
    paused, waiting, active, scheduled, deferred, failed, counters = pipe.execute()
    completed, outages, last_outage, quarantined, last_quarantined = counters
    held = pausing.holds(conn, queue) if paused else {}
    since = min(held.values(), default=None)
    return QueueState(
        queue=queue,
        paused=bool(paused),
        waiting=int(waiting),
        active=int(active),
        delayed=int(scheduled) + int(deferred),
        failed=int(failed),
        completed=int(completed or 0),
        workers=len(live_workers(conn, queue)),
        outages=int(outages or 0),
        last_outage=last_outage.decode() if last_outage else "",
        holds=tuple(sorted(held)),
        paused_seconds=max(0.0, time.time() - since.timestamp()) if since else 0.0,
        quarantined=int(quarantined or 0),
        last_quarantined=last_quarantined.decode() if last_quarantined else "",
    )


def live_workers(conn: redis.Redis, queue: str) -> list[BaseWorker]:
    """Workers of the queue that are alive: registered and listening on their command channel.

    A worker killed a moment ago stays registered until its heartbeat key expires; nothing
    listens on its channel any more, so it is not counted.
    """
    return [w for w, alive in with_listeners(conn, queue) if alive]


def active_jobs(conn: redis.Redis, queue: str) -> int:
    """Jobs running right now (fresh heartbeats only)."""
    key = StartedJobRegistry(queue, conn).key
    return int(conn.zcount(key, *active_bounds(time.time())))
