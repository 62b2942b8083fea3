"""Registered RQ workers as a table: who, where, doing what, and whether anyone is there.

RQ keeps a worker's registration until its heartbeat key expires, so a worker killed a moment
ago still looks registered for up to ``FINEX_WORKER_TTL`` seconds. A live worker listens on its
command channel (our worker subscribes before it registers), so "registered and subscribed" is
live, and "registered with nobody subscribed" is dead-but-registered. ``finex workers stop``
draws the same line before it sends a command.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from rq.command import PUBSUB_CHANNEL_TEMPLATE
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.worker import BaseWorker, Worker

from finex_workers.infra.redisconn import get_queue, text


@dataclass(frozen=True)
class WorkerInfo:
    """One registered worker, as ``finex workers status`` reports it (docs/cli.md)."""

    name: str
    queue: str
    pid: int | None
    #: The host the worker runs on; in Kubernetes, the pod name.
    host: str | None
    #: RQ's state: idle, busy, suspended, started.
    state: str
    current_job: str | None
    #: Seconds since the current job started; None when idle.
    job_age_seconds: float | None
    last_heartbeat: str | None
    #: False: registered, but nothing listens on its command channel (the process is gone).
    alive: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _job_age(conn: redis.Redis, job_id: str | None, now: datetime) -> float | None:
    if job_id is None:
        return None
    try:
        job = Job.fetch(job_id, connection=conn)
    except NoSuchJobError:  # finished between the two reads
        return None
    if job.started_at is None:
        return None
    started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=UTC)
    return round(max(0.0, (now - started).total_seconds()), 1)


def with_listeners(conn: redis.Redis, queue: str) -> list[tuple[BaseWorker, bool]]:
    """Every worker registered on the queue, each with whether it listens (is alive).

    One PUBSUB NUMSUB for all of them, so the cost is O(workers), never O(jobs).
    """
    workers = [
        w for w in Worker.all(connection=conn, queue=get_queue(queue, conn)) if w is not None
    ]
    if not workers:
        return []
    channels = [PUBSUB_CHANNEL_TEMPLATE % w.name for w in workers]
    listeners = {text(channel): int(count) for channel, count in conn.pubsub_numsub(*channels)}
    return [(w, listeners.get(c, 0) > 0) for w, c in zip(workers, channels, strict=True)]


def registered_workers(conn: redis.Redis, queue: str) -> list[WorkerInfo]:
    """Every worker registered on the queue, live or not, sorted by name."""
    now = datetime.now(UTC)
    out = []
    for worker, alive in with_listeners(conn, queue):
        job_id = worker.get_current_job_id()
        heartbeat = worker.last_heartbeat
        out.append(
            WorkerInfo(
                name=worker.name,
                queue=queue,
                pid=worker.pid,
                host=worker.hostname,
                state=str(worker.get_state()),
                current_job=job_id,
                job_age_seconds=_job_age(conn, job_id, now),
                last_heartbeat=heartbeat.isoformat() if heartbeat else None,
                alive=alive,
            )
        )
    return sorted(out, key=lambda w: w.name)
