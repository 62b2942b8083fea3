"""Queue control: the runbook's steps as functions. The CLI and the operator both call these.

Pause and resume, queue state (the six runbook numbers plus live workers), stopping workers,
recovering jobs abandoned by dead workers, and the dead-letter queue (DLQ). The DLQ is RQ's
FailedJobRegistry for the queue, so rq-dashboard shows the same jobs.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import redis
from rq.command import PUBSUB_CHANNEL_TEMPLATE, send_shutdown_command
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.queue import Queue
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result
from rq.worker import BaseWorker, Worker

from finex_workers.localservices import pid_alive
from finex_workers.queues import check_queue_name, get_queue, paused_key, stats_key, text

Progress = Callable[[int, int], None]


def _noop_progress(done: int, total: int) -> None:
    return None


def dlq_retries_key(queue: str) -> str:
    """Hash job id -> how many times the DLQ sent that job back (manual or by policy)."""
    return f"finex:dlq-retries:{queue}"


# -- pause -----------------------------------------------------------------------------------


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


# -- state -----------------------------------------------------------------------------------


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def queue_state(conn: redis.Redis, queue: str) -> QueueState:
    """Counts from Redis in one pipeline: O(1) per queue, whatever the number of jobs."""
    q = get_queue(queue, conn)
    now = time.time()
    pipe = conn.pipeline(transaction=False)
    pipe.exists(paused_key(queue))
    pipe.llen(q.key)
    pipe.zcount(StartedJobRegistry(queue, conn).key, now, "+inf")
    pipe.zcard(ScheduledJobRegistry(queue, conn).key)
    pipe.zcard(DeferredJobRegistry(queue, conn).key)
    pipe.zcard(FailedJobRegistry(queue, conn).key)
    pipe.hget(stats_key(queue), "completed")
    paused, waiting, active, scheduled, deferred, failed, completed = pipe.execute()
    return QueueState(
        queue=queue,
        paused=bool(paused),
        waiting=int(waiting),
        active=int(active),
        delayed=int(scheduled) + int(deferred),
        failed=int(failed),
        completed=int(completed or 0),
        workers=len(live_workers(conn, queue)),
    )


def live_workers(conn: redis.Redis, queue: str) -> list[BaseWorker]:
    """Workers registered on the queue whose heartbeat key has not expired."""
    return [w for w in Worker.all(connection=conn, queue=get_queue(queue, conn)) if w is not None]


def _registry_ids(conn: redis.Redis, key: str, end: int = -1) -> list[str]:
    return [text(i) for i in conn.zrange(key, 0, end)]


def active_jobs(conn: redis.Redis, queue: str) -> int:
    """Jobs running right now (fresh heartbeats only). What a drain waits for."""
    key = StartedJobRegistry(queue, conn).key
    return int(conn.zcount(key, time.time(), "+inf"))


# -- stop ------------------------------------------------------------------------------------


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


# -- stuck jobs ------------------------------------------------------------------------------


@dataclass
class CleanReport:
    """What clean_stuck_jobs did, per job id, with the reason it judged each one abandoned."""

    queue: str
    requeued: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _worker_dead_reason(conn: redis.Redis, worker_name: str) -> str | None:
    """Why the worker is dead, or None if it looks alive."""
    if not worker_name:
        return "no worker recorded for the execution"
    data = conn.hgetall(f"rq:worker:{worker_name}")
    if not data:
        return f"worker {worker_name} is gone (its heartbeat key expired)"
    if data.get(b"death"):
        return f"worker {worker_name} registered its death"
    host = text(data.get(b"hostname") or b"")
    pid = int(data.get(b"pid") or 0)
    if host == socket.gethostname() and pid and not pid_alive(pid):
        return f"worker {worker_name} (pid {pid} on this host) is not running"
    return None


#: Claims one abandoned execution and moves its job on, atomically. Removing the registry entry
#: is the claim: when two sweepers (a supervisor and the operator) judge the same job abandoned,
#: only the one whose ZREM removed it acts, so the job is requeued once, never twice.
#: RQ registers the execution before it marks the job started, so a worker killed in between
#: leaves a job still "queued" and still in the intermediate list: it never ran, so it goes back
#: to the head of its queue without using up an attempt (returns 2).
#: KEYS: started registry, job hash, queue list, failed registry, stats hash, intermediate list.
#: ARGV: registry entry, job id, "requeue" or "dead", new retries_left, DLQ expiry score.
_RECOVER_ONE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local status = redis.call('HGET', KEYS[2], 'status')
if status == 'queued' then
  if redis.call('LREM', KEYS[6], 1, ARGV[2]) == 0 then return 0 end
  redis.call('LPUSH', KEYS[3], ARGV[2])
  redis.call('HINCRBY', KEYS[5], 'recovered', 1)
  return 2
end
if status ~= 'started' then return 0 end
if ARGV[3] == 'requeue' then
  redis.call('HSET', KEYS[2], 'status', 'queued', 'retries_left', ARGV[4])
  redis.call('RPUSH', KEYS[3], ARGV[2])
  redis.call('HINCRBY', KEYS[5], 'recovered', 1)
else
  redis.call('HSET', KEYS[2], 'status', 'failed')
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[2])
  redis.call('HINCRBY', KEYS[5], 'failed', 1)
end
return 1
"""


def clean_stuck_jobs(conn: redis.Redis, queue: str) -> CleanReport:
    """Recover jobs whose worker died: retry while attempts remain, else dead-letter with why.

    A started-registry entry is abandoned when its heartbeat expired, or when its worker's key is
    gone, or when its worker was on this host and the pid no longer exists. Needs no live worker
    of the queue. Each job moves in one atomic script, so a crash here loses nothing, and two
    sweepers running at once cannot both requeue it.

    Also returns to the queue jobs stranded in RQ's intermediate list: a worker that died between
    taking a job (BLMOVE) and starting it leaves the id there. RQ's own maintenance repairs that
    only inside a live worker; here it is repaired at once when the queue has no live worker,
    and otherwise once the id has sat there for a minute.
    """
    q = get_queue(queue, conn)
    started = StartedJobRegistry(queue, conn)
    failed = FailedJobRegistry(queue, conn)
    recover = conn.register_script(_RECOVER_ONE)
    report = CleanReport(queue)
    now = time.time()
    entries = cast(list[tuple[bytes, float]], conn.zrange(started.key, 0, -1, withscores=True))
    for entry, score in entries:
        composite = text(entry)
        job_id, _, execution_id = composite.partition(":")
        worker_name = text(conn.hget(f"rq:execution:{job_id}:{execution_id}", "worker_name") or b"")
        if score < now:
            reason = f"heartbeat expired {now - score:.0f}s ago"
        else:
            dead = _worker_dead_reason(conn, worker_name)
            if dead is None:
                continue
            reason = dead
        if not conn.exists(Job.key_for(job_id)):
            conn.zrem(started.key, composite)  # a leftover entry of a job that is gone
            continue
        job = Job.fetch(job_id, connection=conn)
        requeue = bool(job.retries_left)
        keys = [started.key, job.key, q.key, failed.key, stats_key(queue), q.intermediate_queue_key]
        args = [
            composite,
            job.id,
            "requeue" if requeue else "dead",
            (job.retries_left or 1) - 1,
            now + _failure_ttl(job),
        ]
        outcome = recover(keys=keys, args=args)
        if not outcome:
            continue  # finished meanwhile, or another sweeper got there first
        if outcome == 2:
            report.requeued.append(job.id)
            report.reasons[job.id] = f"{reason}, before the job started (no attempt used)"
            continue
        report.reasons[job.id] = reason
        if requeue:
            report.requeued.append(job.id)
            continue
        report.dead_lettered.append(job.id)
        # A failure Result, as RQ records one, so latest_result() and rq-dashboard show why.
        message = f"AbandonedJobError: {reason}; no attempts left, dead-lettered"
        Result.create_failure(
            job, _failure_ttl(job), message, worker_name, execution_id=execution_id
        )
    _recover_intermediate(conn, q, report)
    return report


def _recover_intermediate(conn: redis.Redis, q: Queue, report: CleanReport) -> None:
    stranded = IntermediateQueue(q.key, conn)
    ids = stranded.get_job_ids()
    if not ids:
        return
    no_workers = not live_workers(conn, q.name)
    running = {text(e).partition(":")[0] for e in conn.zrange(q.started_job_registry.key, 0, -1)}
    for job_id in ids:
        if job_id in running:
            continue
        first_time = stranded.set_first_seen(job_id)
        if not no_workers and (first_time or not stranded.should_be_cleaned_up(job_id)):
            continue
        with conn.pipeline(transaction=True) as pipe:
            pipe.lrem(stranded.key, 1, job_id)
            pipe.lpush(q.key, job_id)
            pipe.delete(stranded.get_first_seen_key(job_id))
            pipe.execute()
        report.requeued.append(job_id)
        report.reasons[job_id] = "taken from the queue by a worker that never started it"


def _failure_ttl(job: Job) -> int:
    return int(job.failure_ttl) if job.failure_ttl and job.failure_ttl > 0 else 30 * 86400


# -- dead-letter queue -----------------------------------------------------------------------


@dataclass(frozen=True)
class DeadJob:
    """One DLQ entry: what it was, why it failed (last line and full text), when."""

    id: str
    queue: str
    func: str
    kwargs: dict[str, Any]
    error: str
    traceback: str
    failed_at: str | None
    dlq_retries: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _last_error(job: Job) -> str:
    """The traceback text of the job's latest failure, from RQ's results stream."""
    try:
        result = job.latest_result()
    except Exception as exc:  # undecodable result data: say so rather than fail the listing
        return f"(could not read the job's result: {exc})"
    if result is None:
        return ""
    return result.exc_string or ""


def list_dlq(conn: redis.Redis, queue: str, *, limit: int | None = None) -> list[DeadJob]:
    """The queue's DLQ, oldest first."""
    registry = FailedJobRegistry(queue, conn)
    end = -1 if limit is None else limit - 1
    ids = _registry_ids(conn, registry.key, end)
    counts = conn.hmget(dlq_retries_key(queue), ids) if ids else []
    out = []
    for job_id, count in zip(ids, counts, strict=True):
        try:
            job = Job.fetch(job_id, connection=conn)
        except Exception as exc:
            out.append(
                DeadJob(
                    job_id, queue, "?", {}, f"job data missing: {exc}", "", None, int(count or 0)
                )
            )
            continue
        text = _last_error(job).strip()
        last = text.splitlines()[-1] if text else "(no error recorded)"
        out.append(
            DeadJob(
                id=job_id,
                queue=queue,
                func=job.func_name or "?",
                kwargs=dict(job.kwargs),
                error=last,
                traceback=text,
                failed_at=job.ended_at.isoformat() if job.ended_at else None,
                dlq_retries=int(count or 0),
            )
        )
    return out


@dataclass(frozen=True)
class DlqSummary:
    """What a retry policy needs of a DLQ entry, without its traceback."""

    id: str
    dlq_retries: int
    failed_at: datetime | None


def dlq_summaries(conn: redis.Redis, queue: str, *, limit: int | None = None) -> list[DlqSummary]:
    """The oldest DLQ entries with their retry counts and failure times, in two round trips
    whatever the limit (list_dlq reads each job and its result: two round trips per job)."""
    ids = _registry_ids(
        conn, FailedJobRegistry(queue, conn).key, -1 if limit is None else limit - 1
    )
    if not ids:
        return []
    pipe = conn.pipeline(transaction=False)
    pipe.hmget(dlq_retries_key(queue), ids)
    for job_id in ids:
        pipe.hget(Job.key_for(job_id), "ended_at")
    counts, *ended = pipe.execute()
    return [
        DlqSummary(job_id, int(count or 0), _parse_time(end))
        for job_id, count, end in zip(ids, counts, ended, strict=True)
    ]


def _parse_time(value: object) -> datetime | None:
    raw = text(value) if value else ""
    if not raw:
        return None
    moment = datetime.fromisoformat(raw)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


#: Moves one job from the DLQ to its queue, atomically: Redis runs a script as one step, so a
#: crash of the caller cannot split it, and no optimistic lock can make it give up under load.
#: KEYS: failed registry, job hash, queue list, dlq-retries hash, stats hash.
#: ARGV: job id, enqueued_at. Returns 1 if moved, 0 if the job was not (or no longer) there.
_RETRY_ONE = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('PERSIST', KEYS[2])
redis.call('HSET', KEYS[2], 'status', 'queued', 'retries_left', '0', 'enqueued_at', ARGV[2])
redis.call('HDEL', KEYS[2], 'started_at', 'ended_at')
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
redis.call('HINCRBY', KEYS[5], 'dlq_retried', 1)
return 1
"""


def retry_dlq(
    conn: redis.Redis,
    queue: str,
    job_ids: Sequence[str] | None = None,
    progress: Progress = _noop_progress,
) -> list[str]:
    """Send DLQ jobs back to their queue for one more attempt; returns the ids sent.

    Unlike RQ's requeue (remove from the registry, then enqueue), each job moves in one atomic
    script: queue push, status and registry removal happen together or not at all, so a crash
    half-way through a bulk retry loses no job. A retried job that fails again returns to the DLQ.
    """
    q = get_queue(queue, conn)
    registry = FailedJobRegistry(queue, conn)
    move = conn.register_script(_RETRY_ONE)
    ids = list(job_ids) if job_ids is not None else _registry_ids(conn, registry.key)
    sent = []
    for n, job_id in enumerate(ids, 1):
        enqueued_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        keys = [registry.key, Job.key_for(job_id), q.key, dlq_retries_key(queue), stats_key(queue)]
        if move(keys=keys, args=[job_id, enqueued_at]):
            sent.append(job_id)
        progress(n, len(ids))
    return sent


def empty_dlq(conn: redis.Redis, queue: str, progress: Progress = _noop_progress) -> int:
    """Delete every job in the queue's DLQ, with its data. Returns how many were removed."""
    registry = FailedJobRegistry(queue, conn)
    ids = _registry_ids(conn, registry.key)
    removed = 0
    for n, job_id in enumerate(ids, 1):
        with conn.pipeline(transaction=True) as pipe:
            pipe.zrem(registry.key, job_id)
            pipe.delete(Job.key_for(job_id), f"rq:results:{job_id}", f"rq:executions:{job_id}")
            pipe.hdel(dlq_retries_key(queue), job_id)
            removed += int(pipe.execute()[0])
        progress(n, len(ids))
    return removed
