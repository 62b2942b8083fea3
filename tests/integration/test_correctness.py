"""Nothing lost, stranded, looped or run twice in ordinary operation (issue 18).

Each test reproduces, against the real Redis, one way today's code lost, stranded or duplicated
work with no fault at all, and runs the project's real worker loop in this process (burst mode)
to see what a worker does with it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from rq.job import Job, JobStatus
from rq.results import Result

from finex_workers.core.keys import stats_key
from finex_workers.infra.processes import pid_namespace
from finex_workers.infra.redisconn import get_queue
from finex_workers.observability.metrics import exporter_registry
from finex_workers.runtime import enqueue
from tests.support.inprocess import InProcessWorker, run_burst
from tests.support.waiting import wait_for

NOOP = "finex_workers.runtime.jobs.noop_job"


def redis_time(conn: redis.Redis) -> float:
    seconds, micros = conn.time()
    return seconds + micros / 1e6


def stat(conn: redis.Redis, queue: str, field: str) -> int:
    return int(conn.hget(stats_key(queue), field) or 0)


# -- item 1: a reused id must live until it runs ---------------------------------------------


def test_a_reused_id_does_not_inherit_the_old_result_ttl(redis_conn, settings: Any) -> None:
    q = get_queue("growth", redis_conn)
    first = enqueue.enqueue_unique(q, NOOP, {}, "growth-42", settings)
    run_burst(redis_conn, "growth")
    job_key = Job.key_for(first.job_id)
    assert Job.fetch(first.job_id, connection=redis_conn).get_status() == JobStatus.FINISHED
    assert redis_conn.ttl(job_key) > 0  # finish.lua: EXPIRE result_ttl

    again = enqueue.enqueue_unique(q, NOOP, {}, "growth-42", settings)
    assert again == enqueue.Enqueued(first.job_id, created=True)
    # Queued work lives until it runs: no seconds left over from the finished run.
    assert redis_conn.ttl(job_key) == -1
    # Nor anything else of the old run: its result and dependents are gone with it.
    assert redis_conn.exists(Result.get_key(first.job_id)) == 0
    assert Job.fetch(first.job_id, connection=redis_conn).get_status() == JobStatus.QUEUED
    assert redis_conn.zscore(q.finished_job_registry.key, first.job_id) is None


def test_a_reused_id_runs_after_the_old_result_ttl_passed(redis_conn, settings: Any) -> None:
    q = get_queue("growth", redis_conn)
    first = enqueue.enqueue_unique(q, NOOP, {}, "growth-42", settings)
    run_burst(redis_conn, "growth")
    job_key = Job.key_for(first.job_id)
    # The old run's result is about to expire (its result_ttl almost over) when the same work
    # is enqueued again, and a backlog keeps it waiting past that moment.
    redis_conn.pexpire(job_key, 50)
    enqueue.enqueue_unique(q, NOOP, {}, "growth-42", settings)
    ends = redis_time(redis_conn) + 0.1
    wait_for("Redis's clock to pass the old TTL", lambda: redis_time(redis_conn) > ends)
    run_burst(redis_conn, "growth")
    assert stat(redis_conn, "growth", "dropped") == 0
    assert stat(redis_conn, "growth", "completed") == 2
    assert Job.fetch(first.job_id, connection=redis_conn).get_status() == JobStatus.FINISHED


def test_enqueue_unique_writes_the_job_as_rq_enqueue_does(redis_conn, settings: Any) -> None:
    # Prove we mirror rq: the script writes the same fields rq's own enqueue_call writes.
    q = get_queue("growth", redis_conn)
    ours = enqueue.enqueue_unique(q, NOOP, {"x": 1}, "mirror", settings).job_id
    theirs = q.enqueue_call(
        NOOP,
        kwargs={"x": 1},
        job_id="mirror-rq",
        timeout=settings.job_timeout,
        failure_ttl=settings.dlq_ttl,
        result_ttl=3600,
        retry=enqueue._retry(settings),
        description="mirror",
    ).id
    mine = redis_conn.hgetall(Job.key_for(ours))
    rqs = redis_conn.hgetall(Job.key_for(theirs))
    moving = {b"created_at", b"enqueued_at"}
    assert set(mine) == set(rqs)
    assert {k: v for k, v in mine.items() if k not in moving} == {
        k: v for k, v in rqs.items() if k not in moving
    }
    assert redis_conn.lrange(q.key, 0, -1) == [ours.encode(), theirs.encode()]
    assert redis_conn.sismember("rq:queues", q.key)
    assert redis_conn.ttl(Job.key_for(ours)) == redis_conn.ttl(Job.key_for(theirs)) == -1


def test_every_missing_id_is_counted_and_burst_goes_on(redis_conn, settings: Any) -> None:
    q = get_queue("growth", redis_conn)
    redis_conn.rpush(q.key, "gone-1")  # an id whose hash is gone
    after = enqueue.enqueue_unique(q, NOOP, {}, "after-gone", settings).job_id
    run_burst(redis_conn, "growth")
    assert stat(redis_conn, "growth", "dropped") == 1
    # Burst mode does not stop at the missing id: the job behind it ran.
    assert Job.fetch(after, connection=redis_conn).get_status() == JobStatus.FINISHED
    registry = exporter_registry(lambda: redis_conn, ["growth"])
    assert registry.get_sample_value("finex_jobs_dropped_total", {"queue": "growth"}) == 1


# -- item 2: a dependent enqueued while its parent runs is released ---------------------------


def test_a_dependent_added_while_the_parent_runs_is_released(redis_conn, settings: Any) -> None:
    q = get_queue("growth", redis_conn)
    parent = enqueue.enqueue_unique(
        q, "tests.support.testjobs.adds_a_dependent", {"child_id": "child-1"}, "parent", settings
    ).job_id
    run_burst(redis_conn, "growth")
    assert Job.fetch(parent, connection=redis_conn).get_status() == JobStatus.FINISHED
    # The child was deferred on a running parent; the parent's success must release it.
    assert Job.fetch("child-1", connection=redis_conn).get_status() == JobStatus.FINISHED


# -- item 7: no duplicate runs ----------------------------------------------------------------


def test_a_claim_sent_again_after_a_lost_reply_returns_the_same_job(
    redis_conn, settings: Any, monkeypatch
) -> None:
    # redis-py re-sends the script with the same arguments when the reply is lost.
    from finex_workers.runtime import worker as worker_module

    q = get_queue("growth", redis_conn)
    first = enqueue.enqueue_unique(q, NOOP, {}, "first", settings).job_id
    second = enqueue.enqueue_unique(q, NOOP, {}, "second", settings).job_id
    worker = InProcessWorker([q], connection=redis_conn, name="growth.resend")
    token = worker_module.uuid4()
    monkeypatch.setattr(worker_module, "uuid4", lambda: token)
    claimed = worker._claim()
    again = worker._claim()
    assert isinstance(claimed, tuple)
    assert isinstance(again, tuple)
    assert claimed[0].id == again[0].id == first
    assert redis_conn.lrange(q.key, 0, -1) == [second.encode()]
    assert len(q.started_job_registry.get_job_ids(cleanup=False)) == 1


def test_the_failure_path_leaves_a_job_the_sweep_took_back(redis_conn, settings: Any) -> None:
    q = get_queue("growth", redis_conn)
    job_id = enqueue.enqueue_unique(
        q, "tests.support.testjobs.swept_then_fails", {}, "swept", settings
    ).job_id
    retries = Job.fetch(job_id, connection=redis_conn).retries_left
    run_burst(redis_conn, "growth", max_jobs=1)
    # The sweep requeued it (a crash: no attempt used, one crash counted); the worker's failure
    # path must not act too: no second copy, no failure recorded, no attempt taken.
    assert redis_conn.lrange(q.key, 0, -1) == [job_id.encode()]
    job = Job.fetch(job_id, connection=redis_conn)
    assert job.get_status() == JobStatus.QUEUED
    assert job.retries_left == retries
    assert int(redis_conn.hget(job.key, "finex_crashes") or 0) == 1
    assert q.failed_job_registry.get_job_ids() == []


# -- item 9: the sweep's dead letters look like every other -----------------------------------


@pytest.mark.parametrize("max_crashes", [0, 1], ids=["out-of-attempts", "quarantined"])
def test_the_sweep_dead_letters_with_ended_at_and_the_dlq_ttl(
    redis_conn, settings: Any, max_crashes: int
) -> None:
    """Both ways the sweep dead-letters: out of attempts (crash accounting off) and quarantined
    at the max_crashes-th crash."""
    import socket

    from finex_workers import control

    q = get_queue("growth", redis_conn)
    job_id = enqueue.enqueue_unique(q, NOOP, {}, "dies-last-attempt", settings).job_id
    redis_conn.hset(Job.key_for(job_id), "retries_left", 0)
    worker = InProcessWorker([q], connection=redis_conn, name="growth.killed")
    assert isinstance(worker._claim(), tuple)
    # SIGKILLed with the job in hand: its key names a pid on this host that is gone.
    redis_conn.hset(
        worker.key,
        mapping={"pid": 4194306, "hostname": socket.gethostname(), "finex_pidns": pid_namespace()},
    )

    report = control.clean_stuck_jobs(redis_conn, "growth", max_crashes=max_crashes)
    assert report.dead_lettered == [job_id]
    assert report.quarantined == ([job_id] if max_crashes else [])
    job = Job.fetch(job_id, connection=redis_conn)
    assert job.get_status() == JobStatus.FAILED
    assert job.ended_at is not None  # the DLQ policy's backoff counts from it
    assert 0 < redis_conn.ttl(job.key) <= settings.dlq_ttl  # gone with its DLQ entry


@pytest.mark.timeout(60)
def test_a_burst_worker_on_a_paused_queue_exits(redis_conn, settings: Any) -> None:
    from finex_workers import control

    q = get_queue("growth", redis_conn)
    job_id = enqueue.enqueue_unique(q, NOOP, {}, "paused-burst", settings).job_id
    control.pause(redis_conn, "growth", by="test")
    run_burst(redis_conn, "growth")  # returns: nothing would run until someone resumes
    assert redis_conn.lrange(q.key, 0, -1) == [job_id.encode()]


def test_a_live_scheduler_on_a_host_with_a_slow_clock_keeps_its_lock(redis_conn) -> None:
    import time
    from datetime import UTC, datetime

    from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
    from rq.utils import utcformat

    from finex_workers.control.scheduling import STALE_SECONDS, take_over_lock

    # It beat just now (its lock was refreshed to the full 61 s), but its clock runs 10 s
    # behind ours, so the heartbeat time it wrote looks STALE_SECONDS + 5 s old here.
    redis_conn.set(RQScheduler.get_locking_key("growth"), "skewed", ex=61)
    beat = datetime.fromtimestamp(time.time() - STALE_SECONDS - 5, tz=UTC)
    redis_conn.hset(
        SCHEDULER_KEY_TEMPLATE % "skewed",
        mapping={"name": "skewed", "hostname": "another-host", "pid": 1,
                 "last_heartbeat": utcformat(beat)},
    )  # fmt: skip
    assert take_over_lock(redis_conn, "growth", "newcomer", 61) is None


def test_two_schedulers_move_a_due_job_once(redis_conn, settings: Any) -> None:
    from rq.registry import ScheduledJobRegistry

    from finex_workers.runtime.scheduler import FinexScheduler

    q = get_queue("growth", redis_conn)
    job = q.enqueue_in(__import__("datetime").timedelta(seconds=-1), NOOP, job_id="due-1")
    assert ScheduledJobRegistry("growth", redis_conn).get_job_ids() == [job.id]
    # A scheduler that took the lock over, and the old holder still alive (a long pause):
    # both read the due job before either moved it.
    first = FinexScheduler(["growth"], redis_conn)
    second = FinexScheduler(["growth"], redis_conn)
    for s in (first, second):
        s._acquired_locks = {"growth"}
        s.prepare_registries()
    due = ScheduledJobRegistry("growth", redis_conn).get_jobs_to_schedule(time.time())
    assert due == [job.id]
    first.enqueue_scheduled_jobs()
    for registry in second._scheduled_job_registries:  # what it read a moment ago
        registry.get_jobs_to_schedule = lambda *a, **k: list(due)
    second.enqueue_scheduled_jobs()
    assert redis_conn.lrange(q.key, 0, -1) == [job.id.encode()]
    assert Job.fetch(job.id, connection=redis_conn).get_status() == JobStatus.QUEUED


def test_worker_maintenance_recovers_abandoned_jobs_through_the_finex_sweep(
    redis_conn, settings: Any
) -> None:
    # One abandoned-job handler: RQ's StartedJobRegistry.cleanup (in worker maintenance) races
    # the finex sweep with other semantics; the worker's maintenance runs the sweep instead.
    q = get_queue("growth", redis_conn)
    job_id = enqueue.enqueue_unique(q, NOOP, {}, "abandoned", settings).job_id
    dead = InProcessWorker([q], connection=redis_conn, name="growth.dead")
    assert isinstance(dead._claim(), tuple)
    redis_conn.delete(dead.key)  # its key expired with it
    started = q.started_job_registry.key
    for entry in redis_conn.zrange(started, 0, -1):
        redis_conn.zadd(started, {entry: 1})  # its heartbeat expired long ago

    live = InProcessWorker([q], connection=redis_conn, name="growth.live")
    live.clean_registries()
    assert stat(redis_conn, "growth", "recovered") == 1
    assert redis_conn.lrange(q.key, 0, -1) == [job_id.encode()]
    assert Job.fetch(job_id, connection=redis_conn).get_status() == JobStatus.QUEUED


def test_a_worker_in_another_pid_namespace_of_this_host_is_not_judged_dead(
    redis_conn, settings: Any
) -> None:
    import socket

    from finex_workers import control

    # The sweep runs in a debug container: same hostname as the worker's pod, other PIDs.
    q = get_queue("growth", redis_conn)
    job_id = enqueue.enqueue_unique(q, NOOP, {}, "other-pidns", settings).job_id
    worker = InProcessWorker([q], connection=redis_conn, name="growth.elsewhere")
    worker.register_birth()
    assert isinstance(worker._claim(), tuple)
    redis_conn.hset(
        worker.key,
        mapping={"pid": 4194306, "hostname": socket.gethostname(), "finex_pidns": "pod/pidns:1"},
    )
    report = control.clean_stuck_jobs(redis_conn, "growth")
    assert report.requeued == []
    assert report.dead_lettered == []
    assert Job.fetch(job_id, connection=redis_conn).get_status() == JobStatus.STARTED


def test_rq_cleanup_racing_the_sweep_does_not_run_a_job_twice(redis_conn, settings: Any) -> None:
    # `rq info` or rq-dashboard run RQ's StartedJobRegistry.cleanup, which reads the expired
    # entries and requeues them in a later round trip; the finex sweep requeued the same job
    # in between. The id is then in the queue twice: the claim runs it once.
    from rq.registry import StartedJobRegistry

    from finex_workers import control

    q = get_queue("growth", redis_conn)
    job_id = enqueue.enqueue_unique(
        q, "tests.support.testjobs.unit", {"outcome": "ok"}, "raced", settings
    ).job_id
    dead = InProcessWorker([q], connection=redis_conn, name="growth.dead")
    assert isinstance(dead._claim(), tuple)
    redis_conn.delete(dead.key)
    started = q.started_job_registry.key
    for entry in redis_conn.zrange(started, 0, -1):
        redis_conn.zadd(started, {entry: 1})
    swept: list[str] = []

    class Racing(Job):
        @classmethod
        def fetch(cls, *args: Any, **kwargs: Any) -> Job:
            job = super().fetch(*args, **kwargs)  # RQ has read the job, status started...
            swept.extend(control.clean_stuck_jobs(redis_conn, "growth").requeued)  # ...the sweep
            return job

    StartedJobRegistry("growth", redis_conn, job_class=Racing).cleanup()
    assert swept == [job_id]
    assert redis_conn.lrange(q.key, 0, -1) == [job_id.encode(), job_id.encode()]

    run_burst(redis_conn, "growth")
    assert int(redis_conn.get(f"test:done:{job_id}") or 0) == 1
    assert stat(redis_conn, "growth", "duplicates") == 1
