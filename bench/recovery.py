"""Dead time after crashes: how late a due retry runs, and how soon an abandoned job returns.

Scenarios, each measured in one run on a private redis-server (AOF on, as in production):

- **retry lateness after a scheduler SIGKILL**: a scheduler holds the queue's lock; it is
  SIGKILLed and a fresh one starts at once (what the supervisor or the kubelet does); a retry is
  due 2 s later. Lateness = when the job is back on its queue minus when it was due. Run with
  RQ's own ``RQScheduler`` (what ``finex workers start`` ran before) and with ours.
- **retry lateness after a Redis SIGKILL + AOF restart**: same, but Redis dies, stays down 3 s
  and restarts from its AOF while the scheduler runs (a crashed scheduler is restarted after
  0.5 s, as the supervisor does).
- **recovery of an abandoned job**, with a live fleet (``finex workers start``) on the queue:
  (a) a job started by a worker that is then SIGKILLed, and (b) a job popped into RQ's
  intermediate list by a worker that died before starting it (what plain ``rq worker`` leaves).
  Recovery = from the kill to the job being back on its queue.

    .venv/bin/python bench/recovery.py            # about 2 minutes on the "after" code
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import redis
from rq.job import Retry
from rq.queue import Queue

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import say, table  # noqa: E402
from finex_workers.dev import localservices  # noqa: E402

QUEUE = "growth"
LOCK = f"rq:scheduler-lock:{QUEUE}"
DUE_IN = 2.0
GIVE_UP = 200.0
#: How long Redis stays down before its restart: longer than the scheduler's 1 s tick, so the
#: scheduler notices (as with a pod rescheduled or a failover).
REDIS_DOWN = 3.0


def scheduler_main(kind: str) -> int:
    """Body of a scheduler process of the given kind (run by this script as a child)."""
    from finex_workers.core.settings import Settings
    from finex_workers.runtime.supervisor import configure_logging, run_scheduler

    configure_logging()
    if kind == "finex":
        return run_scheduler(Settings.from_env(), [QUEUE])
    from rq.scheduler import RQScheduler

    scheduler = RQScheduler([QUEUE], connection=redis.Redis.from_url(os.environ["REDIS_URL"]))
    scheduler.acquire_locks()
    scheduler.work()
    return 0


class Child:
    """A child process with its output in a log file, restarted on a crash if asked to."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            return subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=ROOT,
            )  # fmt: skip

    def restart_if_dead(self) -> None:
        if self.proc.poll() is not None:
            time.sleep(0.5)  # the supervisor's first restart backoff
            self.proc = self._start()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def wait(
    what: str, check: Callable[[], object], timeout: float = GIVE_UP, tick: float = 0.05
) -> float:
    """Poll until check() is truthy; returns the monotonic time it became so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return time.monotonic()
        except (redis.ConnectionError, redis.BusyLoadingError):
            pass
        time.sleep(tick)
    raise RuntimeError(f"gave up waiting for {what} after {timeout:.0f}s")


class Run:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis_dir = workdir / "redis"
        self.redis = localservices.start_redis(self.redis_dir, appendonly=True)
        self.url = self.redis.url
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": self.url,
                    "FINEX_WORKER_TTL": "6"}  # fmt: skip

    def conn(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def restart_redis(self) -> None:
        os.killpg(self.redis.process.pid, signal.SIGKILL)
        self.redis.process.wait()
        time.sleep(REDIS_DOWN)
        self.redis = localservices.start_redis(self.redis_dir, self.redis.port, appendonly=True)

    def scheduler(self, kind: str, n: int) -> Child:
        argv = [sys.executable, str(Path(__file__)), "--scheduler", kind]
        return Child(argv, self.env, self.workdir / f"scheduler-{kind}-{n}.log")

    def schedule_retry(self, conn: redis.Redis) -> tuple[str, float]:
        """A job in the scheduled registry, due DUE_IN seconds from now: a retry with backoff."""
        job = Queue(QUEUE, connection=conn).enqueue_in(timedelta(seconds=DUE_IN), "time.sleep", 0)
        return job.id, time.monotonic() + DUE_IN

    def retry_after_scheduler_kill(self, kind: str) -> float:
        conn = self.conn()
        conn.flushall()
        first = self.scheduler(kind, 1)
        wait("the first scheduler's lock", lambda: conn.exists(LOCK))
        first.kill()
        second = self.scheduler(kind, 2)
        job_id, due = self.schedule_retry(conn)
        try:
            seen = wait(
                "the retry on its queue",
                lambda: job_id.encode() in conn.lrange(f"rq:queue:{QUEUE}", 0, -1),
            )
        finally:
            second.kill()
        return seen - due

    def retry_after_redis_restart(self, kind: str) -> float:
        conn = self.conn()
        conn.flushall()
        sched = self.scheduler(kind, 3)
        wait("the scheduler's lock", lambda: conn.exists(LOCK))
        job_id, due = self.schedule_retry(conn)
        time.sleep(1.2)  # appendfsync everysec: the schedule is on disk
        self.restart_redis()
        conn = self.conn()
        try:

            def back() -> bool:
                sched.restart_if_dead()
                return queued(conn, job_id)

            seen = wait("the retry on its queue", back)
        finally:
            sched.kill()
        return seen - due

    def fleet(self, n: int) -> Child:
        argv = [sys.executable, "-m", "finex_workers.cli", "workers", "start", "--worker", QUEUE]
        return Child(argv, {**self.env, "GROWTH_WORKER_CONCURRENCY": "2"},
                     self.workdir / f"fleet-{n}.log")  # fmt: skip

    def _live_fleet(self, conn: redis.Redis, n: int) -> Child:
        from finex_workers import control

        fleet = self.fleet(n)
        wait("2 live workers", lambda: len(control.live_workers(conn, QUEUE)) >= 2, 60)
        return fleet

    def recovery_of_started(self) -> float:
        """A job runs in a worker, the worker is SIGKILLed: seconds until it is queued again."""
        conn = self.conn()
        conn.flushall()
        fleet = self._live_fleet(conn, 1)
        try:
            job = Queue(QUEUE, connection=conn).enqueue("time.sleep", 60, retry=Retry(max=2))
            wait("the job to start", lambda: job.get_status(refresh=True) == "started")
            worker = text(conn.hget(f"rq:job:{job.id}", "worker_name"))
            pid = int(conn.hget(f"rq:worker:{worker}", "pid") or 0)
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            seen = wait(
                "the job to be requeued",
                lambda: (
                    job.get_status(refresh=True) in ("queued", "started")
                    and text(conn.hget(f"rq:job:{job.id}", "worker_name")) != worker
                ),
            )
        finally:
            fleet.kill()
        return seen - killed

    def recovery_of_popped(self) -> float:
        """A worker of plain RQ took a job (LMOVE to the intermediate list) and died."""
        conn = self.conn()
        conn.flushall()
        fleet = self._live_fleet(conn, 2)
        try:
            q = Queue(QUEUE, connection=conn)
            job = q.enqueue("time.sleep", 0)
            # Pause so our live workers leave the queue alone while we play the dying worker.
            conn.set(f"finex:paused:{QUEUE}", "bench")
            conn.lrem(q.key, 1, job.id)
            conn.lpush(q.intermediate_queue_key, job.id)
            conn.delete(f"finex:paused:{QUEUE}")
            killed = time.monotonic()
            seen = wait(
                "the job to leave the intermediate list",
                lambda: conn.lpos(q.intermediate_queue_key, job.id) is None,
            )
            wait(
                "the job to finish",
                lambda: job.get_status(refresh=True) == "finished",
                60,
            )
        finally:
            fleet.kill()
        return seen - killed

    def close(self) -> None:
        self.redis.stop()


def queued(conn: redis.Redis, job_id: str) -> bool:
    return job_id.encode() in conn.lrange(f"rq:queue:{QUEUE}", 0, -1)


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, default=1, help="trials per scenario (default 1)")
    parser.add_argument(
        "--skip-rq", action="store_true", help="skip RQ's scheduler (slow: ~1-2 min a trial)"
    )
    args = parser.parse_args(argv)
    if args.scheduler:
        return scheduler_main(args.scheduler)
    workdir = Path(tempfile.mkdtemp(prefix="finex-bench-recovery-"))
    run = Run(workdir)
    rows = [["scenario", "rq's RQScheduler (before)", "finex (after)", "ratio"]]
    try:
        for label, measure in (
            ("retry lateness after scheduler SIGKILL, s", run.retry_after_scheduler_kill),
            ("retry lateness after Redis SIGKILL + AOF restart, s", run.retry_after_redis_restart),
        ):
            figures = {}
            for kind in ("rq", "finex"):
                if kind == "rq" and args.skip_rq:
                    continue
                values = []
                for _ in range(args.trials):
                    say(f"{label}: {kind}")
                    values.append(measure(kind))
                figures[kind] = max(values)
            before = figures.get("rq")
            after = figures["finex"]
            rows.append([
                label,
                "-" if before is None else f"{before:.1f}",
                f"{after:.1f}",
                "-" if before is None else f"{before / max(after, 0.01):.0f}x",
            ])  # fmt: skip
        for label, measure2 in (
            ("recovery of a started job after worker SIGKILL, s", run.recovery_of_started),
            ("recovery of a popped-not-started job, s", run.recovery_of_popped),
        ):
            say(label)
            values = [measure2() for _ in range(args.trials)]
            rows.append([label, "", f"{max(values):.1f}", ""])
    finally:
        run.close()
    print(table(rows))
    print(f"(worst of {args.trials} trial(s); logs in {workdir})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
