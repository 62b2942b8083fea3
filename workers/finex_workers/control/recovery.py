"""Recovering jobs whose worker died: the runbook's ``clean-stuck-jobs``.

A started-registry entry is abandoned when its heartbeat expired, or its worker's key is gone,
or its worker ran in this host's PID namespace and the pid no longer exists. Each abandoned job
moves in one atomic script (``lua/recover_one.lua``), so a crash here loses nothing, and two
sweepers running at once (a supervisor and the operator) cannot both requeue it.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import redis
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.utils import utcformat

from finex_workers.control import scripts
from finex_workers.control.state import live_workers
from finex_workers.core.keys import stats_key
from finex_workers.core.settings import Settings
from finex_workers.infra import rqkeys
from finex_workers.infra.processes import pid_alive, pid_namespace
from finex_workers.infra.redisconn import get_queue, text

#: Seconds an id may sit in RQ's intermediate list, not started, before it counts as stranded.
STRANDED_GRACE = 2.0


@dataclass
class CleanReport:
    """What clean_stuck_jobs did, per job id, with the reason it judged each one abandoned."""

    queue: str
    requeued: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)
    #: Dead-lettered as quarantined: they crashed their worker max_crashes times.
    quarantined: list[str] = field(default_factory=list)
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
    # Its pid means something here only in the same PID namespace (not by hostname: a debug
    # container shares it). A worker that did not record one (plain `rq worker`) is judged by
    # its heartbeat and key alone.
    same_pids = text(data.get(b"finex_pidns") or b"") == pid_namespace()
    pid = int(data.get(b"pid") or 0)
    if same_pids and pid and not pid_alive(pid):
        return f"worker {worker_name} (pid {pid} on this host) is not running"
    return None


def clean_stuck_jobs(
    conn: redis.Redis,
    queue: str,
    *,
    max_crashes: int = Settings.max_crashes,
    dead_worker: Crash | None = None,
) -> CleanReport:
    """Recover jobs whose worker died: retry while attempts remain, else dead-letter with why.

    Each such recovery is a crash of the job (see :class:`Crash`): with ``max_crashes`` > 0 it is
    counted on the job apart from its failures and uses no attempt, and the job is quarantined
    in the DLQ at its ``max_crashes``-th crash. ``dead_worker``: recover only that worker's jobs,
    now, with that reason (the supervisor when it reaps a child that died); no intermediate-list
    repair then.

    Needs no live worker of the queue. Also returns to the queue jobs stranded in RQ's
    intermediate list: a worker that died between taking a job (LMOVE) and starting it leaves
    the id there. RQ's own maintenance repairs that only inside a live worker, after a minute;
    here it is repaired in the same sweep (see _recover_intermediate).
    """
    # Any queue name, not only the three: a FinexWorker's maintenance runs this sweep instead of
    # rq's registry cleanup, on whatever queue rq's tooling drives it with (`rq worker -w`).
    q = Queue(queue, connection=conn)
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
        if dead_worker is not None:
            if not _held_by(conn, dead_worker, worker_name, composite):
                continue
            reason = dead_worker.detail
        elif score < now:
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
            utcformat(datetime.fromtimestamp(now, UTC)),
            failure_ttl(job),
            *_crash_args(dead_worker or Crash.judged(reason, worker_name), max_crashes),
        ]
        outcome = recover(keys=keys, args=args)
        if not outcome:
            continue  # finished meanwhile, or another sweeper got there first
        if outcome in (QUARANTINED, CRASH_REQUEUED):
            _after_crash(
                job,
                outcome,
                reason,
                worker_name=worker_name,
                execution_id=execution_id,
                report=report,
            )
            continue
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
    if dead_worker is None:
        _recover_intermediate(conn, q, report)
    return report


#: recover_one's outcomes for a crash: requeued at the head (no attempt used), quarantined.
CRASH_REQUEUED, QUARANTINED = 4, 3
#: What a crash's kind means, for the reason label of finex_jobs_quarantined_total.
CRASH_KINDS = {
    "signal": "the worker process was killed by a signal",
    "exit": "the worker process exited with a non-zero code",
    "oom": "the container was OOMKilled",
    "timeout": "the job overran its timeout in C code; the supervisor ended its worker",
    "lost": "the worker stopped beating (node lost, partitioned, or its container killed)",
    "died": "the worker's process is gone (exit status unknown)",
}


@dataclass(frozen=True)
class Crash:
    """A worker's abnormal death with a job in hand: what killed it, and where.

    ``worker`` is the dead worker's name, or a prefix of it (``<queue>.<host>.<pid>-``: the
    supervisor knows its child's pid, not the name's random suffix). ``kind`` is one of
    :data:`CRASH_KINDS`. Stored on the job as ``finex_last_crash`` = ``"<kind>: <detail>"``.
    """

    kind: str
    detail: str
    worker: str = ""
    #: Only executions started before this time (epoch seconds) are the dead worker's; 0: all.
    #: A restarted container's new workers share the old ones' prefix (``<queue>.<pod>.``).
    before: float = 0.0

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"

    @classmethod
    def judged(cls, reason: str, worker_name: str) -> Crash:
        """The crash a sweep infers from a dead worker's traces (it saw no exit status)."""
        lost = reason.startswith("heartbeat expired") or "is gone" in reason
        where = f"; worker {worker_name}" if worker_name and worker_name not in reason else ""
        return cls("lost" if lost else "died", f"{reason}{where}", worker_name)

    @classmethod
    def of_exit(cls, worker: str, code: int, *, overdue: bool = False) -> Crash:
        """The crash of a child whose exit code (os.waitstatus_to_exitcode) the supervisor saw."""
        host = worker.split(".", 1)[-1].rpartition(".")[0] or "?"  # <queue>.<host>.<pid>-
        where = f"worker {worker.rstrip('-')} on {host}"
        if overdue:
            return cls("timeout", f"ran past its timeout + margin, SIGKILLed; {where}", worker)
        if code < 0:
            name = signal.Signals(-code).name if -code in _SIGNALS else f"signal {-code}"
            return cls("signal", f"killed by {name} ({-code}); {where}", worker)
        return cls("exit", f"exit code {code}; {where}", worker)


_SIGNALS = {s.value for s in signal.Signals}


def _held_by(conn: redis.Redis, crash: Crash, worker_name: str, composite: str) -> bool:
    """Whether the execution was the crashed worker's: its name prefix, started before
    ``crash.before`` (a restarted container's new workers share the prefix, and start later)."""
    if not worker_name.startswith(crash.worker):
        return False
    if not crash.before:
        return True
    created = conn.hget(rqkeys.execution_key(composite), "created_at")
    return created is None or float(text(created)) <= crash.before


def _crash_args(crash: Crash, max_crashes: int) -> list[str | int]:
    """recover_one's crash arguments; none (old behaviour) when crash accounting is off."""
    if max_crashes <= 0:
        return []
    return [str(crash), max_crashes, crash.kind]


def _after_crash(
    job: Job,
    outcome: int,
    reason: str,
    *,
    worker_name: str,
    execution_id: str,
    report: CleanReport,
) -> None:
    crashes = int(job.connection.hget(job.key, "finex_crashes") or 0)
    if outcome == CRASH_REQUEUED:
        report.requeued.append(job.id)
        report.reasons[job.id] = f"{reason} (crash {crashes}, no attempt used)"
        return
    report.dead_lettered.append(job.id)
    report.quarantined.append(job.id)
    report.reasons[job.id] = f"{reason}; quarantined after {crashes} crashes"
    message = (
        f"JobQuarantined: the job crashed its worker {crashes} times "
        f"(FINEX_MAX_CRASHES); last: {reason}. Not retried automatically."
    )
    Result.create_failure(job, failure_ttl(job), message, worker_name, execution_id=execution_id)


def _recover_intermediate(conn: redis.Redis, q: Queue, report: CleanReport) -> None:
    """Put back ids stranded in RQ's intermediate list, within one sweep.

    A live RQ worker moves an id from there to the started registry one round trip after it
    took it, so an id still there, not running, :data:`STRANDED_GRACE` seconds after it was
    first seen was taken by a worker that died. RQ's own maintenance waits a minute, and only
    runs inside a live worker; this waits the grace once per sweep (only when such an id exists)
    and puts the id back in the same sweep, so such a job comes back as fast as a started one.
    With no live worker on the queue nobody can be about to start it: it goes back at once.
    """
    stranded = IntermediateQueue(q.key, conn)
    if not stranded.get_job_ids():
        return
    no_workers = not live_workers(conn, q.name)
    for attempt in range(2):
        running = {
            text(e).partition(":")[0] for e in conn.zrange(q.started_job_registry.key, 0, -1)
        }
        waiting = []
        for job_id in stranded.get_job_ids():
            if job_id in running:
                continue
            stranded.set_first_seen(job_id)
            first_seen = stranded.get_first_seen(job_id)
            age = time.time() - first_seen.timestamp() if first_seen else 0.0
            if not no_workers and age < STRANDED_GRACE:
                waiting.append(job_id)
                continue
            seen = stranded.get_first_seen_key(job_id)
            if scripts.put_back(conn, q.name, job_id, first_seen_key=seen):
                report.requeued.append(job_id)
                report.reasons[job_id] = "taken from the queue by a worker that never started it"
        if not waiting or attempt:
            return
        time.sleep(STRANDED_GRACE)


def return_for_outage(
    conn: redis.Redis,
    job: Job,
    execution_id: str,
    worker_key_executions: str,
    service: str,
    *,
    most: int = Settings.outage_returns_max,
) -> int:
    """Put a started job back at the tail of its queue with its attempts intact.

    What a worker does with the job in hand when PostgreSQL or Redis went away: the outage is
    counted in ``finex:stats:<queue>`` (``outages``, ``last_outage``) instead of as a failure.
    The tail, not the head: a job that keeps coming back never blocks the jobs behind it.
    Returns RETURNED; SWEPT if a sweeper had already recovered the job; CAPPED if the job had
    been returned ``most`` times already (nothing changed: the worker fails it as usual).
    """
    composite = f"{job.id}:{execution_id}"
    q = get_queue(job.origin, conn)
    keys = [
        q.started_job_registry.key,
        job.key,
        q.key,
        stats_key(q.name),
        rqkeys.execution_key(composite),
        worker_key_executions,
    ]
    when = datetime.now(UTC).isoformat(timespec="seconds")
    args: list[str | int] = [composite, job.id, service, when, most]
    return int(scripts.script(conn, "return_job")(keys=keys, args=args))


#: return_for_outage's outcomes.
SWEPT, RETURNED, CAPPED = 0, 1, 2


def failure_ttl(job: Job) -> int:
    """How long the job stays in the DLQ: its own failure_ttl, else the default DLQ TTL."""
    return int(job.failure_ttl) if job.failure_ttl and job.failure_ttl > 0 else Settings.dlq_ttl
