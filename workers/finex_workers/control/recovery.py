"""Recovering jobs whose worker died: the runbook's ``clean-stuck-jobs``.

A started-registry entry is abandoned when its heartbeat expired, or its worker's key is gone,
or its worker was on this host and the pid no longer exists. Each abandoned job moves in one
atomic script (``lua/recover_one.lua``), so a crash here loses nothing, and two sweepers running
at once (a supervisor and the operator) cannot both requeue it.
"""

from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import redis
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.results import Result

from finex_workers.control import scripts
from finex_workers.control.state import live_workers
from finex_workers.core.keys import stats_key
from finex_workers.core.settings import Settings
from finex_workers.infra import rqkeys
from finex_workers.infra.processes import pid_alive
from finex_workers.infra.redisconn import get_queue, text


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
    data = conn.hgetall(rqkeys.worker_key(worker_name))
    if not data:
        return f"worker {worker_name} is gone (its heartbeat key expired)"
    if data.get(b"death"):
        return f"worker {worker_name} registered its death"
    host = text(data.get(b"hostname") or b"")
    pid = int(data.get(b"pid") or 0)
    if host == socket.gethostname() and pid and not pid_alive(pid):
        return f"worker {worker_name} (pid {pid} on this host) is not running"
    return None


def clean_stuck_jobs(conn: redis.Redis, queue: str) -> CleanReport:
    """Recover jobs whose worker died: retry while attempts remain, else dead-letter with why.

    Needs no live worker of the queue. Also returns to the queue jobs stranded in RQ's
    intermediate list: a worker that died between taking a job (LMOVE) and starting it leaves
    the id there. RQ's own maintenance repairs that only inside a live worker; here it is
    repaired at once when the queue has no live worker, and otherwise once the id has sat there
    for a minute.
    """
    q = get_queue(queue, conn)
    started = StartedJobRegistry(queue, conn)
    failed = FailedJobRegistry(queue, conn)
    recover = scripts.script(conn, "recover_one")
    report = CleanReport(queue)
    now = time.time()
    entries = cast(list[tuple[bytes, float]], conn.zrange(started.key, 0, -1, withscores=True))
    for entry, score in entries:
        composite = text(entry)
        job_id, _, execution_id = composite.partition(":")
        worker_name = text(conn.hget(rqkeys.execution_key(composite), "worker_name") or b"")
        if score < now:
            reason = f"heartbeat expired {now - score:.0f}s ago"
        else:
            dead = _worker_dead_reason(conn, worker_name)
            if dead is None:
                continue
            reason = dead
        if not conn.exists(rqkeys.job_key(job_id)):
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
            now + failure_ttl(job),
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
            job, failure_ttl(job), message, worker_name, execution_id=execution_id
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
        seen = stranded.get_first_seen_key(job_id)
        if scripts.put_back(conn, q.name, job_id, first_seen_key=seen):
            report.requeued.append(job_id)
            report.reasons[job_id] = "taken from the queue by a worker that never started it"


def failure_ttl(job: Job) -> int:
    """How long the job stays in the DLQ: its own failure_ttl, else the default DLQ TTL."""
    return int(job.failure_ttl) if job.failure_ttl and job.failure_ttl > 0 else Settings.dlq_ttl
