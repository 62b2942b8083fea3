"""Job functions only the tests enqueue: failures on demand, to drive retries and the DLQ."""

from __future__ import annotations

import os

import redis


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


def flaky_job(key: str, fail_times: int) -> int:
    """Fail the first fail_times calls for this key (counted in Redis), then succeed."""
    calls = int(_redis().incr(f"test:calls:{key}"))
    if calls <= fail_times:
        raise RuntimeError(f"flaky failure {calls} of {fail_times} for {key}")
    return calls


def always_fails(reason: str) -> None:
    raise RuntimeError(f"always fails: {reason}")


def held_job(key: str) -> int:
    """Record this run's pid (test:runs:<key>), then wait until test:release:<key> exists."""
    import time

    conn = _redis()
    runs = int(conn.rpush(f"test:runs:{key}", os.getpid()))
    deadline = time.monotonic() + 120
    while not conn.exists(f"test:release:{key}") and time.monotonic() < deadline:
        time.sleep(0.05)
    return runs


def kills_its_worker(key: str) -> None:
    """Record this run's pid (test:runs:<key>), then SIGKILL the process running it."""
    import signal

    _redis().rpush(f"test:runs:{key}", os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


def adds_a_dependent(child_id: str) -> None:
    """While running, enqueue a job that depends on this one (rq's depends_on): the child is
    deferred on a parent that is still running."""
    from rq import Queue, get_current_job

    job = get_current_job()
    assert job is not None
    queue = Queue(job.origin, connection=_redis())
    queue.enqueue("finex_workers.runtime.jobs.noop_job", job_id=child_id, depends_on=job.id)


def swept_then_fails() -> None:
    """While running, have the stuck-job sweep judge this job abandoned (its heartbeat expired,
    as after a long GC pause) and requeue it; then fail. The worker no longer owns it."""
    from rq import get_current_job
    from rq.registry import StartedJobRegistry

    from finex_workers import control

    job = get_current_job()
    assert job is not None
    conn = _redis()
    started = StartedJobRegistry(job.origin, conn)
    for entry in conn.zrange(started.key, 0, -1):
        conn.zadd(started.key, {entry: 1})  # expired long ago
    report = control.clean_stuck_jobs(conn, job.origin)
    assert report.requeued == [job.id], report
    raise RuntimeError("fails after the sweep took the job back")


def unit(outcome: str) -> None:
    """One unit of work of the stateful test: "ok" succeeds, "fail" raises, "slow" outlives its
    timeout. A success is counted per job id in `test:done:<id>`; an overlap with another run
    of the same id (a second run while one is in progress) is counted in `test:overlaps`."""
    from rq import get_current_job

    job = get_current_job()
    assert job is not None
    conn = _redis()
    if not conn.set(f"test:running:{job.id}", "1", nx=True, ex=60):
        conn.incr("test:overlaps")
    try:
        if outcome == "fail":
            raise RuntimeError(f"unit {job.id} fails on purpose")
        if outcome == "slow":
            import time

            time.sleep(float(job.timeout or 1) + 0.2)
        conn.incr(f"test:done:{job.id}")
    finally:
        conn.delete(f"test:running:{job.id}")
