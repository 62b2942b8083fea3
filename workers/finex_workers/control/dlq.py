"""The dead-letter queue (DLQ): list, retry and empty it.

The DLQ is RQ's FailedJobRegistry for the queue, so rq-dashboard shows the same jobs. A job
reaches it when its retries are used up, or at once when its payload is bad. Retrying moves each
job in one atomic script (``lua/retry_one.lua``), so a crash half-way through a bulk retry loses
nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from rq.job import Job
from rq.registry import FailedJobRegistry

from finex_workers.control import scripts
from finex_workers.core.keys import dlq_retries_key, stats_key
from finex_workers.infra import rqkeys
from finex_workers.infra.redisconn import get_queue, text

#: Called with (done, total) as a bulk step goes along.
Progress = Callable[[int, int], None]


def _noop_progress(done: int, total: int) -> None:
    return None


def _registry_ids(conn: redis.Redis, key: str, end: int = -1) -> list[str]:
    return [text(i) for i in conn.zrange(key, 0, end)]


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
    #: Why it was quarantined (its last crash: "<kind>: <detail>"), or None.
    quarantined: str | None = None
    #: Times the job crashed its worker (finex_crashes), apart from its failures.
    crashes: int = 0

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
        trace = _last_error(job).strip()
        last = trace.splitlines()[-1] if trace else "(no error recorded)"
        quarantined, crashes = conn.hmget(job.key, ["finex_quarantined", "finex_crashes"])
        out.append(
            DeadJob(
                id=job_id,
                queue=queue,
                func=job.func_name or "?",
                kwargs=dict(job.kwargs),
                error=last,
                traceback=trace,
                failed_at=job.ended_at.isoformat() if job.ended_at else None,
                dlq_retries=int(count or 0),
                quarantined=text(quarantined) if quarantined else None,
                crashes=int(crashes or 0),
            )
        )
    return out


@dataclass(frozen=True)
class DlqSummary:
    """What a retry policy needs of a DLQ entry, without its traceback."""

    id: str
    dlq_retries: int
    failed_at: datetime | None
    #: Quarantined after crashing its worker max_crashes times: never retried automatically.
    quarantined: bool = False


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
        pipe.hmget(rqkeys.job_key(job_id), ["ended_at", "finex_quarantined"])
    counts, *fields = pipe.execute()
    return [
        DlqSummary(job_id, int(count or 0), _parse_time(end), quarantined=bool(quarantined))
        for job_id, count, (end, quarantined) in zip(ids, counts, fields, strict=True)
    ]


def _parse_time(value: object) -> datetime | None:
    raw = text(value) if value else ""
    if not raw:
        return None
    moment = datetime.fromisoformat(raw)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
    move = scripts.script(conn, "retry_one")
    ids = list(job_ids) if job_ids is not None else _registry_ids(conn, registry.key)
    sent = []
    for n, job_id in enumerate(ids, 1):
        enqueued_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        keys = [
            registry.key,
            rqkeys.job_key(job_id),
            q.key,
            dlq_retries_key(queue),
            stats_key(queue),
        ]
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
            pipe.delete(
                rqkeys.job_key(job_id),
                rqkeys.results_key(job_id),
                rqkeys.executions_key(job_id),
            )
            pipe.hdel(dlq_retries_key(queue), job_id)
            removed += int(pipe.execute()[0])
        progress(n, len(ids))
    return removed
