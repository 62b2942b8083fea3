"""A crashed worker's job runs again within seconds, and a job that keeps crashing its worker is
quarantined (issue 19). Real supervisor, real Redis: the supervisor sees its child's death when
it reaps it and recovers that worker's job at once, far below FINEX_WORKER_TTL."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time

from prometheus_client import generate_latest
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry

from finex_workers import control
from finex_workers.infra.redisconn import get_queue
from finex_workers.observability.metrics import exporter_registry
from finex_workers.runtime import enqueue
from tests.integration.test_cli import finex
from tests.support.waiting import wait_for


def _enqueue(conn, settings, func: str, kwargs: dict, base_id: str) -> str:
    return enqueue.enqueue_unique(
        get_queue("growth", conn), f"tests.support.testjobs.{func}", kwargs, base_id, settings
    ).job_id


def _runs(conn, key: str) -> list[int]:
    return [int(p) for p in conn.lrange(f"test:runs:{key}", 0, -1)]


def test_a_sigkilled_workers_job_runs_again_within_seconds_once(
    redis_conn, settings, start_fleet
) -> None:
    # A TTL of 60 s, as in production: the heartbeat is not what brings the job back.
    fleet = start_fleet(["growth"], GROWTH_WORKER_CONCURRENCY="2", FINEX_WORKER_TTL="60")
    fleet.wait_ready(redis_conn, per_queue=2)
    job_id = _enqueue(redis_conn, settings, "held_job", {"key": "k"}, "held-k")
    (pid,) = wait_for("the job to start", lambda: _runs(redis_conn, "k"))
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_for("the job to run again", lambda: len(_runs(redis_conn, "k")) >= 2, timeout=90)
    elapsed = time.monotonic() - killed_at
    redis_conn.set("test:release:k", 1)
    job = Job.fetch(job_id, connection=redis_conn)
    wait_for("the job to finish", lambda: job.get_status(refresh=True) == "finished", 30)
    print(f"SIGKILL -> running again: {elapsed:.2f}s")
    assert elapsed < 2.0, f"the job ran again {elapsed:.1f}s after its worker was killed"
    assert len(_runs(redis_conn, "k")) == 2  # once more only
    crashes, last = redis_conn.hmget(job.key, ["finex_crashes", "finex_last_crash"])
    assert int(crashes or 0) == 1
    assert b"SIGKILL" in (last or b""), last
    assert redis_conn.zcard(StartedJobRegistry("growth", redis_conn).key) == 0
    assert redis_conn.llen(get_queue("growth", redis_conn).key) == 0
    assert "recovered at once" in fleet.output()


def test_a_job_that_kills_its_worker_is_quarantined_after_n_crashes(
    redis_conn, settings, fleet_env, start_fleet
) -> None:
    fleet = start_fleet(
        ["growth"],
        GROWTH_WORKER_CONCURRENCY="2",
        FINEX_WORKER_TTL="60",
        FINEX_MAX_CRASHES="3",
        FINEX_RETRY_MAX="10",
    )
    fleet.wait_ready(redis_conn, per_queue=2)
    started = time.monotonic()
    settings = dataclasses.replace(settings, retry_max=10)  # what the jobs are enqueued with
    killer = _enqueue(redis_conn, settings, "kills_its_worker", {"key": "x"}, "killer")
    others = [
        _enqueue(redis_conn, settings, "flaky_job", {"key": f"ok{i}", "fail_times": 0}, f"ok{i}")
        for i in range(20)
    ]
    failed = FailedJobRegistry("growth", redis_conn)
    wait_for("the killer to be dead-lettered", lambda: killer in failed.get_job_ids(), 60)
    took = time.monotonic() - started
    print(f"quarantined after {took:.2f}s")
    assert len(_runs(redis_conn, "x")) == 3  # N crashes, then no more runs
    fields = redis_conn.hmget(
        Job.key_for(killer), ["finex_crashes", "finex_quarantined", "retries_left"]
    )
    assert int(fields[0] or 0) == 3
    assert b"SIGKILL" in (fields[1] or b""), fields
    assert int(fields[2] or 0) == 10  # a crash uses no ordinary attempt
    wait_for(
        "the other jobs to finish",
        lambda: all(Job.fetch(j, connection=redis_conn).get_status() == "finished" for j in others),
        60,
    )
    (entry,) = control.list_dlq(redis_conn, "growth")
    assert entry.quarantined, entry
    assert "SIGKILL" in entry.quarantined
    assert entry.crashes == 3
    assert "quarantined" in entry.error.lower()
    # Not a candidate for dlq.autoRetry.
    (summary,) = control.dlq_summaries(redis_conn, "growth")
    assert summary.quarantined
    # The CLI shows it: list-dlq (text and --json) and status --json.
    (listed,) = json.loads(finex(fleet_env, "workers", "list-dlq", "--json").stdout)
    assert listed["id"] == killer
    assert listed["crashes"] == 3
    assert "signal: killed by SIGKILL" in listed["quarantined"]
    assert "QUARANTINED after 3 crashes" in finex(fleet_env, "workers", "list-dlq").stdout
    (row,) = json.loads(
        finex(fleet_env, "workers", "status", "--worker", "growth", "--json").stdout
    )
    assert row["quarantined"] == 1
    assert row["last_quarantined"].startswith(killer)
    # The exporter's counter, labelled with the crash's kind.
    text = generate_latest(exporter_registry(lambda: redis_conn, ["growth"])).decode()
    assert 'finex_jobs_quarantined_total{queue="growth",reason="signal"} 1.0' in text
    assert took < 20  # three crashes, each recovered at once (the TTL is 60 s)


def test_a_dead_containers_jobs_only_and_once(redis_conn) -> None:
    """What the operator does for a Pod whose worker container was OOMKilled: the jobs of the
    workers named after that Pod, started before the container finished, go back at once; the
    jobs of the container the kubelet restarted in its place (same name prefix, started later)
    stay; a second report of the same death recovers nothing more."""
    from finex_workers.infra import rqkeys

    q = get_queue("growth", redis_conn)
    started = StartedJobRegistry("growth", redis_conn)
    died_at = time.time()
    for job_id, worker, created in (
        ("old", "growth.pod-a.41-aaaaaa", died_at - 30),  # the dead container's
        ("new", "growth.pod-a.41-bbbbbb", died_at + 5),  # the restarted container's
        ("other", "growth.pod-b.41-cccccc", died_at - 30),  # another Pod's
    ):
        job = q.create_job("finex_workers.runtime.jobs.noop_job", job_id=job_id)
        job.retries_left = 3
        job.save()
        redis_conn.hset(job.key, "status", "started")
        composite = f"{job_id}:exec"
        redis_conn.hset(
            rqkeys.execution_key(composite), mapping={"worker_name": worker, "created_at": created}
        )
        redis_conn.zadd(started.key, {composite: time.time() + 600})  # heartbeats still fresh
    crash = control.Crash(
        "oom",
        "worker container of Pod pod-a OOMKilled (exit code 137)",
        worker="growth.pod-a.",
        before=died_at + 1,
    )
    report = control.clean_stuck_jobs(redis_conn, "growth", dead_worker=crash)
    assert report.requeued == ["old"]
    assert redis_conn.lrange(q.key, 0, -1) == [b"old"]
    assert redis_conn.hget(Job.key_for("old"), "finex_last_crash") == str(crash).encode()
    assert redis_conn.hget(Job.key_for("old"), "retries_left") == b"3"  # no attempt used
    assert sorted(m.decode() for m in redis_conn.zrange(started.key, 0, -1)) == [
        "new:exec",
        "other:exec",
    ]
    again = control.clean_stuck_jobs(redis_conn, "growth", dead_worker=crash)
    assert (again.requeued, again.dead_lettered) == ([], [])
    assert redis_conn.llen(q.key) == 1
