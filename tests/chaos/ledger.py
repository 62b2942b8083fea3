"""The chaos tier's one invariant, checked after every fault, and the table it prints.

Every enqueued probe job is finished and ran exactly once (its row in ``finex_probes`` counts
runs), or sits in exactly one queue or registry. A job in none of them is lost; a probe that ran
more than once was duplicated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
import redis
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from finex_workers.infra.redisconn import get_queue, text


@dataclass
class Ledger:
    """Where every enqueued job is, after a fault."""

    finished: list[str] = field(default_factory=list)
    pending: dict[str, list[str]] = field(default_factory=dict)  # job id -> places
    lost: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)  # probe id -> runs
    dead_lettered: list[str] = field(default_factory=list)

    @property
    def in_two_places(self) -> dict[str, list[str]]:
        return {j: p for j, p in self.pending.items() if len(p) > 1}

    def ok(self, *, allow_duplicates: bool = False) -> bool:
        return (
            not self.lost and not self.in_two_places and (allow_duplicates or not self.duplicated)
        )


def probe_runs(db: psycopg.Connection, probe_ids: list[str]) -> dict[str, int]:
    rows = db.execute(
        "SELECT probe_id, runs FROM finex_probes "
        "WHERE probe_id = ANY(%s) AND finished_at IS NOT NULL",
        (probe_ids,),
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def check(conn: redis.Redis, db: psycopg.Connection, queue: str, probes: dict[str, str]) -> Ledger:
    """probes: probe id -> job id."""
    q = get_queue(queue, conn)
    places = {
        "queue": {text(i) for i in conn.lrange(q.key, 0, -1)},
        "intermediate": {text(i) for i in conn.lrange(q.intermediate_queue_key, 0, -1)},
        "scheduled": set(ScheduledJobRegistry(queue, conn).get_job_ids()),
        "started": {
            text(e).partition(":")[0]
            for e in conn.zrange(StartedJobRegistry(queue, conn).key, 0, -1)
        },
        "dlq": set(FailedJobRegistry(queue, conn).get_job_ids()),
    }
    runs = probe_runs(db, list(probes))
    ledger = Ledger()
    for probe_id, job_id in probes.items():
        n = runs.get(probe_id, 0)
        if n > 1:
            ledger.duplicated[probe_id] = n
        job = Job.fetch(job_id, connection=conn) if conn.exists(f"rq:job:{job_id}") else None
        where = [name for name, ids in places.items() if job_id in ids]
        if job is not None and job.get_status() == "finished" and n >= 1:
            ledger.finished.append(job_id)
            continue
        if "dlq" in where:
            ledger.dead_lettered.append(job_id)
        if where:
            ledger.pending[job_id] = where
        elif n >= 1:
            # Ran and committed, but Redis forgot it finished (a write lost with Redis): it is
            # done, so not lost; its bookkeeping is gone.
            ledger.finished.append(job_id)
        else:
            ledger.lost.append(job_id)
    return ledger


@dataclass
class Row:
    fault: str
    affected: int
    lost: int
    duplicated: int
    dead_lettered: int
    recovery_seconds: float
    note: str = ""


ROWS: list[Row] = []


def table(rows: list[Row]) -> str:
    head = ["fault", "jobs affected", "lost", "duplicated", "dead-lettered", "recovery s", "note"]
    cells = [head] + [
        [r.fault, str(r.affected), str(r.lost), str(r.duplicated), str(r.dead_lettered),
         f"{r.recovery_seconds:.1f}", r.note]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(head))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
