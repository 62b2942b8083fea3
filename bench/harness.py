"""What the benchmarks share: local services, timed drains of worker processes, the report.

A drain starts worker processes on a queue, waits until every one has exited (burst mode), and
collects wall time, the first-start-to-last-end time from the job hashes, the Redis commands
(``INFO commandstats``) and the Redis round trips counted by bench/rtt.py in every process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rq import Queue
from rq.job import Job
from rq.registry import FinishedJobRegistry

ROOT = Path(__file__).resolve().parent.parent
RTT = ROOT / "bench" / "rtt.py"
#: A drain that takes longer than this has hung (a crashed worker restarting, say): give up.
DRAIN_TIMEOUT = 600


def say(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the results."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Drain:
    """One timed drain of a queue by worker processes started for it."""

    label: str
    jobs: int
    launched: float  # perf_counter when the first worker process was started
    wall: float  # worker start to the last worker process exit, seconds
    busy: float  # first job started_at to last job ended_at, seconds
    commands: int  # Redis commands executed during the drain (INFO commandstats)
    round_trips: int  # sends on Redis connections by the worker processes (bench/rtt.py)
    by_command: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.jobs / self.wall

    @property
    def busy_rate(self) -> float:
        return self.jobs / self.busy


@dataclass
class Bench:
    """The services and scratch space of one run."""

    workdir: Path
    redis_url: str  # without a db number
    pg_url: str  # the maintenance database
    database_url: str = ""

    def redis(self, db: int) -> redis.Redis:
        return redis.Redis.from_url(f"{self.redis_url}/{db}")

    def env(self, db: int, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": f"{self.redis_url}/{db}",
            "DATABASE_URL": self.database_url,
            **extra,
        }

    def finex_argv(self, label: str, queue: str) -> list[str]:
        rtt = self.workdir / f"{label}.rtt"
        return [
            sys.executable,
            str(RTT),
            str(rtt),
            "finex",
            "workers",
            "start",
            "--burst",
            "--worker",
            queue,
        ]

    def rq_argv(self, label: str, db: int, queue: str, worker_class: str = "") -> list[str]:
        """`rq worker --burst`; worker_class picks e.g. rq.worker.SimpleWorker (default forks)."""
        rtt = self.workdir / f"{label}.rtt"
        url = f"{self.redis_url}/{db}"
        argv = [sys.executable, str(RTT), str(rtt), "rq", "worker", "--burst", "--url", url]
        return [*argv, *(["-w", worker_class] if worker_class else []), queue]

    def drain(
        self,
        label: str,
        argvs: Sequence[list[str]],
        env: dict[str, str],
        db: int,
        queue: str,
        job_ids: Sequence[str],
    ) -> Drain:
        """Start the worker processes, wait for all to exit (burst), and collect the figures."""
        conn = self.redis(db)
        rtt_file = self.workdir / f"{label}.rtt"
        rtt_file.unlink(missing_ok=True)
        log_path = self.workdir / f"{label}.log"
        conn.config_resetstat()
        with log_path.open("wb") as log:
            launched = time.perf_counter()
            procs = [
                subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
                for argv in argvs
            ]
            try:
                codes = [p.wait(timeout=DRAIN_TIMEOUT) for p in procs]
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
            wall = time.perf_counter() - launched
        stats = conn.info("commandstats")
        if any(codes):
            raise RuntimeError(f"{label}: worker exit codes {codes}; see {log_path}")
        finished = FinishedJobRegistry(queue, connection=conn).count
        if finished != len(job_ids):
            raise RuntimeError(f"{label}: {finished} of {len(job_ids)} jobs finished; {log_path}")
        jobs = [j for j in Job.fetch_many(list(job_ids), connection=conn) if j is not None]
        starts = [j.started_at for j in jobs if j.started_at]
        ends = [j.ended_at for j in jobs if j.ended_at]
        busy = (max(ends) - min(starts)).total_seconds()
        by_command = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        round_trips = sum(int(line.split()[1]) for line in rtt_file.read_text().splitlines())
        conn.close()
        return Drain(
            label,
            len(job_ids),
            launched,
            wall,
            busy,
            sum(by_command.values()),
            round_trips,
            by_command,
        )


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if a / b >= 1 else f"{a / b:.2f}x"


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def top_commands(drain: Drain, limit: int = 12) -> str:
    ranked = sorted(drain.by_command.items(), key=lambda kv: -kv[1])[:limit]
    parts = [f"{name} {calls / drain.jobs:.2f}" for name, calls in ranked]
    return f"  {drain.label} ({drain.jobs} jobs): " + ", ".join(parts)


#: The job of the no-op figures: it does nothing, so what is measured is the worker.
NOOP = "finex_workers.runtime.jobs.noop_job"


def enqueue_noops(conn: redis.Redis, queue: str, count: int) -> list[str]:
    """count no-op jobs in one pipeline (not timed), on an emptied db."""
    conn.flushdb()
    data = [Queue.prepare_data(NOOP, job_id=f"noop-{i}") for i in range(count)]
    return [job.id for job in Queue(queue, connection=conn).enqueue_many(data)]
