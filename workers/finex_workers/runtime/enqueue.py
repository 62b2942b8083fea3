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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue, Retry
from rq.job import Job
from rq.results import Result

from finex_workers.control import scripts
from finex_workers.core.settings import Settings
from finex_workers.infra.redisconn import get_queue, text

_JOBS = "finex_workers.runtime.jobs."
#: Generations tried per base id before giving up (only reached if 8 copies run at once).
MAX_GENERATIONS = 8


@dataclass(frozen=True)
class Enqueued:
    """What an enqueue did: the job that will do the work, and whether it is new."""

    job_id: str
    created: bool


def _generation_ids(base_id: str) -> list[str]:
    return [base_id] + [f"{base_id}--g{n}" for n in range(1, MAX_GENERATIONS)]


def _retry(settings: Settings) -> Retry | None:
    """The retry policy every unit of work gets: settings.retry_max attempts after the first."""
    if settings.retry_max <= 0:
        return None
    return Retry(max=settings.retry_max, interval=list(settings.retry_intervals))


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

    One atomic script (``control/lua/enqueue_unique.lua``) checks every generation's status and
    enqueues under the first free one, so two clients never both enqueue the same work, and
    nothing needs a lock that a crashed client could leave behind. A free generation that holds
    a finished run is reset first: a reused id must not keep the old run's ``result_ttl``
    EXPIRE (RQ's own enqueue keeps it: HSET keeps a key's TTL), or the queued job would vanish
    when that runs out before a worker claims it.

    The job hash is built by RQ's own code (``Queue.create_job``, ``_prepare_for_queue``,
    ``Job.to_dict``), so it is the hash RQ's enqueue writes (a test compares the two).
    func is a dotted path, so enqueueing never imports the job code (and its database layer).
    """
    conn = queue.connection
    ids = _generation_ids(base_id)
    job = queue.create_job(
        func,
        kwargs=kwargs,
        job_id=base_id,
        timeout=settings.job_timeout,
        failure_ttl=settings.dlq_ttl,
        result_ttl=3600,
        retry=_retry(settings),
        description=description or base_id,
    )
    queue._prepare_for_queue(job)
    fields = [part for pair in job.to_dict().items() for part in pair]
    keys = [queue.key, queue.redis_queues_keys, queue.finished_job_registry.key]
    for job_id in ids:
        generation = Job(job_id, connection=conn)
        keys += [
            generation.key,
            Result.get_key(job_id),
            generation.dependents_key,
            generation.dependencies_key,  # RQ spells it rq:job::<id>:dependencies
        ]
    reply = scripts.script(conn, "enqueue_unique")(
        keys=keys, args=[len(ids), queue.key, *ids, *fields]
    )
    kind = text(reply[0])
    if kind == "busy":
        raise RuntimeError(f"{MAX_GENERATIONS} generations of {base_id} are running or failed")
    return Enqueued(ids[int(reply[1]) - 1], created=kind == "created")


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
