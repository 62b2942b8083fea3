"""Pause, resume and stop: the runbook's first steps of a safe restart.

A pause is per queue (RQ's ``rq suspend`` is global) and has holders: ``finex:paused:<queue>`` is
a hash of holder -> the time it paused the queue. The workers (and claim.lua) only ask whether
the key EXISTS, and Redis deletes a hash with its last field, so the queue stays paused while
anyone still holds it. Each party pauses and lifts under its own name (:class:`Holder`): the
CLI's ``pause``, its ``restart``, the operator's restart and its ``spec.paused``. A restart then
lifts only the pause it set, and a pause someone else took before or during it stays.
``resume`` (the CLI's ``finex workers resume``) is the hand override that lifts every hold.

Stopping asks live workers over RQ's own command channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum, unique

import redis
from redis.client import Pipeline
from rq.command import send_shutdown_command

from finex_workers.core.keys import paused_key
from finex_workers.core.names import check_queue_name
from finex_workers.infra.redisconn import text
from finex_workers.infra.rqworkers import with_listeners


@unique
class Holder(StrEnum):
    """Who holds a pause: the field names of ``finex:paused:<queue>``."""

    #: ``finex workers pause``.
    CLI = "cli"
    #: ``finex workers restart`` (control's own restart steps, on a host).
    CLI_RESTART = "finex workers restart"
    #: The operator's safe restart (finex.io/restart).
    OPERATOR_RESTART = "finex-operator restart"
    #: The operator's declarative pause (spec.paused).
    OPERATOR_SPEC = "finex-operator spec.paused"
    #: What operators before holders wrote for both; each of them lifts it.
    LEGACY_OPERATOR = "finex-operator"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _legacy(value: str) -> tuple[str, str]:
    """(holder, time) of a pause written before holders: the string "<by> at <time>"."""
    by, _, at = value.rpartition(" at ")
    return (by, at) if by else (value or "unknown", "")


def _change(conn: redis.Redis, queue: str, command: str, by: str) -> bool:
    """HSETNX (take) or HDEL (lift) one holder's field, atomically with rewriting a pause
    written before holders (a string) as a hash. True if the field was set, or was there."""
    check_queue_name(queue)
    key = paused_key(queue)

    def change(pipe: Pipeline) -> None:
        # Immediate mode (WATCHed) until multi(): read the type, then queue the writes.
        old = text(pipe.get(key) or b"") if text(pipe.type(key)) == "string" else None
        pipe.multi()
        if old is not None:
            holder, at = _legacy(old)
            pipe.delete(key)
            pipe.hset(key, holder, at or _now())
        if command == "take":
            pipe.hsetnx(key, by, _now())
        else:
            pipe.hdel(key, by)

    replies = conn.transaction(change, key)
    assert isinstance(replies, list)  # the EXEC reply; redis-py types it loosely
    return bool(replies[-1])


def pause(conn: redis.Redis, queue: str, *, by: str = Holder.CLI) -> bool:
    """Hold a pause on the queue under `by`: enqueues still land, workers take no new job.

    False if `by` already held it (the queue may also be held by others, see :func:`holds`).
    """
    return _change(conn, queue, "take", by)


def release(conn: redis.Redis, queue: str, *, by: str) -> bool:
    """Lift `by`'s hold; the queue resumes only if nobody else holds it. False if `by` held none."""
    return _change(conn, queue, "lift", by)


def resume(conn: redis.Redis, queue: str) -> bool:
    """Resume a paused queue whoever holds it (the hand override). False if it was not paused."""
    check_queue_name(queue)
    return bool(conn.delete(paused_key(queue)))


def is_paused(conn: redis.Redis, queue: str) -> bool:
    return bool(conn.exists(paused_key(queue)))


def holds(conn: redis.Redis, queue: str) -> dict[str, datetime]:
    """Who holds the queue paused, and since when ({} when it is not paused)."""
    key = paused_key(queue)
    try:
        raw = {text(k): text(v) for k, v in conn.hgetall(key).items()}
    except redis.ResponseError:  # WRONGTYPE: a pause written before holders
        holder, at = _legacy(text(conn.get(key) or b""))
        raw = {holder: at}
    out = {}
    for by, at in raw.items():
        try:
            out[by] = datetime.fromisoformat(at)
        except ValueError:  # unreadable: count it as held from the epoch, not as absent
            out[by] = datetime.fromtimestamp(0, UTC)
    return out


def paused_by(conn: redis.Redis, queue: str) -> str | None:
    """Who paused the queue and when ("<by> at <time>, ..."), or None when it is not paused."""
    held = holds(conn, queue)
    if not held:
        return None
    return ", ".join(f"{by} at {at.isoformat(timespec='seconds')}" for by, at in held.items())


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
