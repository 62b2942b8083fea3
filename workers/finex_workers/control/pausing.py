"""Pause, resume and stop: the runbook's first steps of a safe restart.

A pause is per queue (RQ's ``rq suspend`` is global): a ``finex:paused:<queue>`` key that the
workers check once per job. Stopping asks live workers over RQ's own command channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from rq.command import send_shutdown_command

from finex_workers.core.keys import paused_key
from finex_workers.core.names import check_queue_name
from finex_workers.infra.rqworkers import with_listeners


def pause(conn: redis.Redis, queue: str, *, by: str = "cli") -> bool:
    """Pause a queue: enqueues still land, workers take no new job. False if already paused."""
    check_queue_name(queue)
    value = f"{by} at {datetime.now(UTC).isoformat(timespec='seconds')}"
    return bool(conn.set(paused_key(queue), value, nx=True))


def resume(conn: redis.Redis, queue: str) -> bool:
    """Resume a paused queue. False if it was not paused."""
    check_queue_name(queue)
    return bool(conn.delete(paused_key(queue)))


def is_paused(conn: redis.Redis, queue: str) -> bool:
    return bool(conn.exists(paused_key(queue)))


def paused_by(conn: redis.Redis, queue: str) -> str | None:
    """Who paused the queue and when ("<by> at <time>"), or None when it is not paused."""
    value = conn.get(paused_key(queue))
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class StopReport:
    """Which live workers were asked to stop, and which had nobody listening for the command."""

    queue: str
    asked: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)


def stop_workers(conn: redis.Redis, queue: str) -> StopReport:
    """Ask every live worker of the queue to finish its job and exit (warm shutdown).

    The command goes over RQ's pub/sub channel, which keeps nothing for absent listeners, so a
    worker whose channel has no subscriber (a process that died within its heartbeat TTL) is
    reported as unreachable instead of being counted as asked.
    """
    report = StopReport(queue)
    for worker, alive in with_listeners(conn, queue):
        if alive:
            send_shutdown_command(conn, worker.name)
            report.asked.append(worker.name)
        else:
            report.unreachable.append(worker.name)
    return report
