"""Enqueueing with deterministic job ids and deduplication of pending work.

Every piece of work has a base id derived from what it computes (``growth-42``,
``matrix-row-42``, ``matrix-assets-<digest>``). Enqueueing work that is already pending (queued,
scheduled or deferred) returns the pending job instead of adding a second one.

If the base id is running, or parked in the DLQ, the work goes under the next generation id
(``<base>--g1``, ``<base>--g2`` ...; RQ ids allow only letters, digits, - and _): a running job
may have read its inputs before they changed, so the follow-up must run again, and a DLQ entry
keeps its error until someone acts on it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue, Retry
from rq.job import Job, JobStatus

from finex_workers.core.keys import dedup_lock_key
from finex_workers.core.settings import Settings
from finex_workers.infra.redisconn import get_queue

_JOBS = "finex_workers.runtime.jobs."
#: Generations tried per base id before giving up (only reached if 8 copies run at once).
MAX_GENERATIONS = 8
_PENDING = {JobStatus.QUEUED.value, JobStatus.SCHEDULED.value, JobStatus.DEFERRED.value}
_BUSY = {JobStatus.STARTED.value, JobStatus.FAILED.value}


@dataclass(frozen=True)
class Enqueued:
    """What an enqueue did: the job that will do the work, and whether it is new."""

    job_id: str
    created: bool


@contextmanager
def _id_lock(conn: redis.Redis, base_id: str, timeout: float = 10.0) -> Iterator[None]:
    key = dedup_lock_key(base_id)
    deadline = time.monotonic() + timeout
    while not conn.set(key, "1", nx=True, px=int(timeout * 1000)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not take the enqueue lock for {base_id} in {timeout}s")
        time.sleep(0.002)
    try:
        yield
    finally:
        conn.delete(key)


def _generation_ids(base_id: str) -> list[str]:
    return [base_id] + [f"{base_id}--g{n}" for n in range(1, MAX_GENERATIONS)]


def enqueue_unique(
    queue: Queue,
    func: str,
    kwargs: dict[str, Any],
    base_id: str,
    settings: Settings,
    *,
    description: str | None = None,
) -> Enqueued:
    """Enqueue func(**kwargs) under base_id unless the same work is already pending.

    func is a dotted path, so enqueueing never imports the job code (and its database layer).
    """
    conn = queue.connection
    ids = _generation_ids(base_id)
    with _id_lock(conn, base_id):
        pipe = conn.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(Job.key_for(job_id), "status")
        statuses = [s.decode() if s else None for s in pipe.execute()]
        for job_id, status in zip(ids, statuses, strict=True):
            if status in _PENDING:
                return Enqueued(job_id, created=False)
        free = next((i for i, s in zip(ids, statuses, strict=True) if s not in _BUSY), None)
        if free is None:
            raise RuntimeError(f"{MAX_GENERATIONS} generations of {base_id} are running or failed")
        retry = (
            Retry(max=settings.retry_max, interval=list(settings.retry_intervals))
            if settings.retry_max > 0
            else None
        )
        queue.enqueue_call(
            func,
            kwargs=kwargs,
            job_id=free,
            timeout=settings.job_timeout,
            failure_ttl=settings.dlq_ttl,
            result_ttl=3600,
            retry=retry,
            description=description or base_id,
        )
        return Enqueued(free, created=True)


def _digest(ids: Sequence[int]) -> str:
    text = ",".join(str(i) for i in sorted(set(ids)))
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


def matrix_rows(conn: redis.Redis, settings: Settings, asset_ids: Sequence[int]) -> Enqueued:
    """Recompute the matrix rows of these assets (every scenario), as one batch job."""
    ids = sorted(set(asset_ids))
    base = f"matrix-row-{ids[0]}" if len(ids) == 1 else f"matrix-assets-{_digest(ids)}"
    return enqueue_unique(
        get_queue("matrix", conn), _JOBS + "matrix_job", {"asset_ids": ids}, base, settings
    )


def matrix_columns(conn: redis.Redis, settings: Settings, scenario_ids: Sequence[int]) -> Enqueued:
    """Recompute the matrix columns of these scenarios (every asset), as one batch job."""
    ids = sorted(set(scenario_ids))
    base = f"matrix-col-{ids[0]}" if len(ids) == 1 else f"matrix-scenarios-{_digest(ids)}"
    return enqueue_unique(
        get_queue("matrix", conn), _JOBS + "matrix_job", {"scenario_ids": ids}, base, settings
    )


def growth(conn: redis.Redis, settings: Settings, asset_id: int) -> Enqueued:
    """Recompute one asset's growth and volatility from its price history."""
    return enqueue_unique(
        get_queue("growth", conn),
        _JOBS + "growth_job",
        {"asset_id": asset_id},
        f"growth-{asset_id}",
        settings,
    )


def growth_batch(conn: redis.Redis, settings: Settings, asset_ids: Sequence[int]) -> Enqueued:
    """Recompute growth for a chunk of assets; its follow-up recomputes those matrix rows."""
    ids = sorted(set(asset_ids))
    return enqueue_unique(
        get_queue("growth", conn),
        _JOBS + "growth_batch_job",
        {"asset_ids": ids},
        f"growth-assets-{_digest(ids)}",
        settings,
    )


def probability(conn: redis.Redis, settings: Settings, scenario_id: int) -> Enqueued:
    """Recompute one scenario's probability (and its group's) from its evidence."""
    return enqueue_unique(
        get_queue("probability", conn),
        _JOBS + "probability_job",
        {"scenario_id": scenario_id},
        f"probability-{scenario_id}",
        settings,
    )
