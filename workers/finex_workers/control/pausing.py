"""Pause, resume and stop: the runbook's first steps of a safe restart.

A pause is per queue (RQ's ``rq suspend`` is global): a ``finex:paused:<queue>`` key that the
workers check once per job. Stopping asks live workers over RQ's own command channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from rq.command import PUBSUB_CHANNEL_TEMPLATE, send_shutdown_command

from finex_workers.control.state import live_workers
from finex_workers.core.keys import paused_key
from finex_workers.core.names import check_queue_name
from finex_workers.infra.redisconn import text


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
    names = [worker.name for worker in live_workers(conn, queue)]
    if not names:
        return report
    channels = [PUBSUB_CHANNEL_TEMPLATE % name for name in names]
    listeners = {text(channel): count for channel, count in conn.pubsub_numsub(*channels)}
    for name, channel in zip(names, channels, strict=True):
        if listeners.get(channel, 0):
            send_shutdown_command(conn, name)
            report.asked.append(name)
        else:
            report.unreachable.append(name)
    return report
