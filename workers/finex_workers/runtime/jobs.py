"""RQ job entry points. Each takes plain ids, validates them, and calls the domain layer.

A bad payload raises PayloadError with a message naming the field; the worker sends such jobs
straight to the DLQ without retries, because running them again cannot succeed.

Follow-up work is enqueued after the commit, every time, even when nothing changed: if a worker
died between the commit and the enqueue, the retried job finds nothing to change and must still
enqueue the follow-up. Deduplication and the idempotent matrix upsert make that cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import psycopg
import redis
from rq import get_current_job
from rq.queue import Queue
from rq.utils import now as utcnow

from finex_workers import domain
from finex_workers.core.errors import InsufficientDataError, PayloadError
from finex_workers.core.settings import Settings
from finex_workers.infra import dbconn
from finex_workers.infra.redisconn import redis_from_url
from finex_workers.runtime import enqueue

#: Largest id list a single matrix job accepts; bigger fan-outs are chunked by the enqueuer.
MAX_BATCH = 100_000
T = TypeVar("T")


@cache
def settings() -> Settings:
    """This process's settings, parsed on first use (never at import)."""
    return Settings.from_env()


def _redis() -> redis.Redis:
    job = get_current_job()
    return job.connection if job is not None else redis_from_url(settings().redis_url)


def deadline() -> float | None:
    """When the running job's time is up, on ``time.monotonic()``'s clock; None without one.

    From the job's own timeout (what RQ's death penalty uses) and when its worker started it.
    """
    job = get_current_job()
    if job is None or job.started_at is None:
        return None
    timeout = job.timeout or Queue.DEFAULT_TIMEOUT
    if timeout <= 0:  # -1: no limit
        return None
    elapsed = (utcnow() - job.started_at).total_seconds()
    return time.monotonic() + timeout - max(0.0, elapsed)


def in_database(work: Callable[[psycopg.Connection[tuple[object, ...]]], T]) -> T:
    """Run work(conn) in one transaction on this process's connection, bounded by the job's
    time left on the server too (dbconn.run): a timed-out job leaves no statement running."""
    s = settings()
    return dbconn.run(
        s.worker_database_url, work, deadline=deadline(), prepare=s.pg_prepared_statements
    )


def require_id(field: str, value: object) -> int:
    """value as a positive integer id, or PayloadError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{field} must be an integer id, got {value!r} ({type(value).__name__})")
    if value <= 0:
        raise PayloadError(f"{field} must be a positive integer id, got {value}")
    return value


def require_ids(field: str, values: object) -> list[int]:
    """values as a non-empty list of positive integer ids, or PayloadError naming the field."""
    if not isinstance(values, list | tuple):
        raise PayloadError(
            f"{field} must be a list of integer ids, got {values!r} ({type(values).__name__})"
        )
    if not values:
        raise PayloadError(f"{field} must not be empty")
    if len(values) > MAX_BATCH:
        raise PayloadError(f"{field} has {len(values)} ids; at most {MAX_BATCH} per job")
    return [require_id(f"{field}[{i}]", v) for i, v in enumerate(values)]


def matrix_job(asset_ids: object = None, scenario_ids: object = None) -> dict[str, Any]:
    """Recompute impact scores for a chunk of assets (all scenarios) or scenarios (all assets)."""
    if (asset_ids is None) == (scenario_ids is None):
        raise PayloadError("matrix job needs exactly one of asset_ids or scenario_ids")
    assets = require_ids("asset_ids", asset_ids) if asset_ids is not None else None
    scenarios = require_ids("scenario_ids", scenario_ids) if scenario_ids is not None else None
    rows = in_database(
        lambda conn: domain.compute_matrix(conn, asset_ids=assets, scenario_ids=scenarios)
    )
    return {"rows_changed": rows}


def growth_job(asset_id: object) -> dict[str, Any]:
    """Recompute an asset's growth and volatility, then its matrix row."""
    aid = require_id("asset_id", asset_id)
    result = in_database(lambda conn: domain.update_growth(conn, aid))
    follow = enqueue.matrix_rows(_redis(), settings(), [aid])
    return {
        "asset_id": aid,
        "growth_rate": result.growth_rate,
        "volatility": result.volatility,
        "changed": result.changed,
        "matrix_job": follow.job_id,
    }


def growth_batch_job(asset_ids: object) -> dict[str, Any]:
    """Recompute growth for a chunk of assets in one transaction, then their matrix rows."""
    ids = require_ids("asset_ids", asset_ids)

    def update_all(conn: Any) -> tuple[int, list[int]]:
        changed, short = 0, []
        with conn.transaction():
            for aid in ids:
                try:
                    changed += domain.update_growth(conn, aid).changed
                except InsufficientDataError:
                    short.append(aid)  # too little history yet: leave its growth unset
        return changed, short

    changed, short = in_database(update_all)
    follow = enqueue.matrix_rows(_redis(), settings(), ids)
    return {
        "assets": len(ids),
        "changed": changed,
        "insufficient_data": short,
        "matrix_job": follow.job_id,
    }


def probability_job(scenario_id: object) -> dict[str, Any]:
    """Recompute a scenario's probability (renormalising its group), then those columns."""
    sid = require_id("scenario_id", scenario_id)
    changed = in_database(lambda conn: domain.update_probability(conn, sid))
    members = in_database(lambda conn: domain.group_members(conn, sid))
    follow = enqueue.matrix_columns(_redis(), settings(), members)
    return {"scenario_id": sid, "changed": changed, "matrix_job": follow.job_id}


def noop_job() -> None:
    """Does nothing; the benchmark uses it to measure the worker's own overhead."""


def probe_job(probe_id: object, hold_seconds: object = 0) -> dict[str, Any]:
    """A canary: write a row to finex_probes in one transaction held open for hold_seconds.

    Operators use it to prove a queue works end to end (Redis, worker, PostgreSQL); the tests use
    the hold to have a job in flight, mid-transaction, when they pause, SIGTERM or SIGKILL it.
    """
    if not isinstance(probe_id, str) or not probe_id or len(probe_id) > 200:
        raise PayloadError(f"probe_id must be a non-empty string, got {probe_id!r}")
    if (
        isinstance(hold_seconds, bool)
        or not isinstance(hold_seconds, int | float)
        or not (0 <= hold_seconds <= 3600)
    ):
        raise PayloadError(f"hold_seconds must be a number in 0..3600, got {hold_seconds!r}")
    job = get_current_job()
    queue = job.origin if job is not None else ""

    def write(conn: Any) -> int:
        with conn.transaction():
            conn.execute(
                "INSERT INTO finex_probes (probe_id, queue, runs) VALUES (%s, %s, 1) "
                "ON CONFLICT (probe_id) DO UPDATE SET runs = finex_probes.runs + 1",
                (probe_id, queue),
            )
            conn.execute("SELECT pg_sleep(%s)", (float(hold_seconds),))
            row = conn.execute(
                "UPDATE finex_probes SET finished_at = clock_timestamp() WHERE probe_id = %s "
                "RETURNING runs",
                (probe_id,),
            ).fetchone()
            return int(row[0])

    runs = in_database(write)
    return {"probe_id": probe_id, "runs": runs}
