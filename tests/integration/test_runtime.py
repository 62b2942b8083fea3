"""The worker runtime against real Redis and PostgreSQL, with workers as real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import redis
from rq.job import Job, JobStatus
from rq.worker import Worker

from finex_workers import control
from finex_workers.core.settings import Settings
from finex_workers.infra.redisconn import get_queue
from finex_workers.runtime import enqueue
from finex_workers.runtime.worker import FinexWorker
from tests.support.fleet import STOP_BOUND, probe
from tests.support.waiting import wait_for


def probe_row(db: psycopg.Connection, probe_id: str) -> tuple | None:
    return db.execute(
        "SELECT runs, finished_at IS NOT NULL FROM finex_probes WHERE probe_id = %s", (probe_id,)
    ).fetchone()


def status(conn: redis.Redis, job_id: str) -> str:
    return Job.fetch(job_id, connection=conn).get_status().value


def test_paused_queue_keeps_accepting_but_idle_worker_takes_nothing(
    redis_conn, db, settings, start_fleet
) -> None:
    fleet = start_fleet(["matrix", "growth"])
    fleet.wait_ready(redis_conn)
    time.sleep(0.3)  # both workers are idle, blocked waiting for work
    assert control.pause(redis_conn, "matrix")

    held = probe(redis_conn, settings, "matrix", "on-matrix")
    free = probe(redis_conn, settings, "growth", "on-growth")

    wait_for("growth probe to run", lambda: probe_row(db, "on-growth") == (1, True))
    time.sleep(1.5)  # give the paused worker every chance to misbehave
    assert probe_row(db, "on-matrix") is None
    assert status(redis_conn, held) == "queued"
    state = control.queue_state(redis_conn, "matrix")
    assert state.paused
    assert state.waiting == 1
    assert state.active == 0

    assert control.resume(redis_conn, "matrix")
    wait_for("matrix probe after resume", lambda: probe_row(db, "on-matrix") == (1, True))
    assert status(redis_conn, free) == "finished"


def test_duplicate_enqueue_of_pending_work_is_deduplicated(redis_conn, settings) -> None:
    first = enqueue.growth(redis_conn, settings, 7)
    second = enqueue.growth(redis_conn, settings, 7)
    assert first.created
    assert not second.created
    assert first.job_id == second.job_id == "growth-7"
    assert control.queue_state(redis_conn, "growth").waiting == 1

    # While the first is running, new work gets the next generation id, deduplicated again.
    redis_conn.hset(Job.key_for("growth-7"), "status", JobStatus.STARTED.value)
    third = enqueue.growth(redis_conn, settings, 7)
    fourth = enqueue.growth(redis_conn, settings, 7)
    assert third.job_id == fourth.job_id == "growth-7--g1"
    assert third.created
    assert not fourth.created


def test_failing_job_is_retried_then_dead_lettered_then_retried_from_dlq(
    redis_conn, settings, start_fleet
) -> None:
    q = get_queue("growth", redis_conn)
    # Fails 3 times: the first run plus FINEX_RETRY_MAX=2 retries, so it lands in the DLQ.
    job_id = enqueue.enqueue_unique(
        q, "tests.support.testjobs.flaky_job", {"key": "k1", "fail_times": 3}, "flaky-k1", settings
    ).job_id
    doomed = enqueue.enqueue_unique(
        q, "tests.support.testjobs.always_fails", {"reason": "disk on fire"}, "doomed", settings
    ).job_id
    fleet = start_fleet(["growth"])
    fleet.wait_ready(redis_conn)
    wait_for("two DLQ entries", lambda: len(control.list_dlq(redis_conn, "growth")) == 2)
    assert int(redis_conn.get("test:calls:k1")) == 3

    dead = {j.id: j for j in control.list_dlq(redis_conn, "growth")}
    assert "flaky failure 3 of 3 for k1" in dead[job_id].error
    assert "disk on fire" in dead[doomed].error

    assert control.retry_dlq(redis_conn, "growth", [job_id]) == [job_id]
    wait_for("retried job to finish", lambda: status(redis_conn, job_id) == "finished")
    assert int(redis_conn.get("test:calls:k1")) == 4
    assert [j.id for j in control.list_dlq(redis_conn, "growth")] == [doomed]

    assert control.empty_dlq(redis_conn, "growth") == 1
    assert control.list_dlq(redis_conn, "growth") == []
    assert not redis_conn.exists(Job.key_for(doomed))


def test_bad_payloads_go_to_dlq_with_clear_message_and_worker_survives(
    redis_conn, db, settings, start_fleet
) -> None:
    q = get_queue("growth", redis_conn)
    bad_type = enqueue.enqueue_unique(
        q, "finex_workers.runtime.jobs.growth_job", {"asset_id": "abc"}, "bad-type", settings
    ).job_id
    unknown = enqueue.enqueue_unique(
        q, "finex_workers.runtime.jobs.growth_job", {"asset_id": 999999}, "bad-id", settings
    ).job_id
    fleet = start_fleet(["growth"])
    fleet.wait_ready(redis_conn)
    wait_for("bad jobs in DLQ", lambda: len(control.list_dlq(redis_conn, "growth")) == 2)
    dead = {j.id: j for j in control.list_dlq(redis_conn, "growth")}
    assert "asset_id must be an integer id, got 'abc' (str)" in dead[bad_type].error
    assert "asset_id" in dead[unknown].error
    assert "999999" in dead[unknown].error
    # Payload errors are never retried: each ran exactly once.
    stats = redis_conn.hgetall("finex:stats:growth")
    assert int(stats[b"failed"]) == 2

    probe(redis_conn, settings, "growth", "after-bad")
    wait_for("worker to keep going", lambda: probe_row(db, "after-bad") == (1, True))


def test_sigkilled_worker_job_is_recovered_by_clean_stuck_jobs(
    redis_conn, db, settings, start_fleet
) -> None:
    fleet = start_fleet(["growth"])
    fleet.wait_ready(redis_conn)
    job_id = probe(redis_conn, settings, "growth", "killed", hold=4)
    wait_for("probe to start", lambda: status(redis_conn, job_id) == "started")
    fleet.kill()  # supervisor and worker die mid-transaction
    assert probe_row(db, "killed") is None  # its transaction never committed

    report = control.clean_stuck_jobs(redis_conn, "growth")
    assert report.requeued == [job_id]
    assert "not running" in report.reasons[job_id] or "gone" in report.reasons[job_id]
    assert status(redis_conn, job_id) == "queued"

    # Nothing is lost: a new worker runs it to completion.
    fleet2 = start_fleet(["growth"])
    fleet2.wait_ready(redis_conn)
    wait_for(
        "recovered job to finish", lambda: status(redis_conn, job_id) == "finished", timeout=60
    )
    assert probe_row(db, "killed") == (1, True)


def test_stuck_job_without_attempts_left_is_dead_lettered_with_reason(
    redis_conn, settings, start_fleet
) -> None:
    no_retry = Settings.from_env(
        {
            "REDIS_URL": settings.redis_url,
            "DATABASE_URL": settings.database_url,
            "FINEX_RETRY_MAX": "0",
        }
    )
    fleet = start_fleet(["growth"])
    fleet.wait_ready(redis_conn)
    job_id = probe(redis_conn, no_retry, "growth", "doomed", hold=30)
    wait_for("probe to start", lambda: status(redis_conn, job_id) == "started")
    fleet.kill()

    # No worker of this queue is alive, and the CLI still does the job.
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "finex_workers.cli",
            "workers",
            "clean-stuck-jobs",
            "--worker",
            "growth",
        ],
        capture_output=True,
        text=True,
        check=True,
        # Crash accounting off: a crash then uses an attempt, as before issue 19.
        env={"REDIS_URL": settings.redis_url, "PATH": "/usr/bin:/bin", "FINEX_MAX_CRASHES": "0"},
    )
    assert "1 dead-lettered" in out.stdout
    [dead] = control.list_dlq(redis_conn, "growth")
    assert dead.id == job_id
    assert "AbandonedJobError" in dead.error


def test_sigterm_during_a_job_lets_it_commit(redis_conn, db, settings, start_fleet) -> None:
    fleet = start_fleet(["growth"])
    fleet.wait_ready(redis_conn)
    job_id = probe(redis_conn, settings, "growth", "graceful", hold=2)
    wait_for("probe to start", lambda: status(redis_conn, job_id) == "started")
    fleet.proc.send_signal(signal.SIGTERM)
    assert fleet.proc.wait(60) == 0
    assert probe_row(db, "graceful") == (1, True)
    assert status(redis_conn, job_id) == "finished"
    assert control.live_workers(redis_conn, "growth") == []


def test_stop_verb_asks_workers_to_exit(redis_conn, settings, start_fleet) -> None:
    fleet = start_fleet(["probability"])
    fleet.wait_ready(redis_conn)
    # Right after it is listed as live, a worker must already hear the command (no start-up race).
    report = control.stop_workers(redis_conn, "probability")
    assert len(report.asked) == 1, report
    assert report.unreachable == []
    assert fleet.proc.wait(60) == 0


def test_stop_verb_names_a_registered_worker_that_is_not_listening(
    redis_conn, settings, start_fleet
) -> None:
    fleet = start_fleet(["probability"])
    fleet.wait_ready(redis_conn)
    # A registration with nobody subscribed to its command channel: what a worker that died
    # within its heartbeat TTL leaves behind.
    ghost = Worker(["probability"], connection=redis_conn, name="ghost-worker")
    ghost.register_birth()

    out = subprocess.run(
        [sys.executable, "-m", "finex_workers.cli", "workers", "stop", "--worker", "probability"],
        check=False,
        capture_output=True,
        text=True,
        env={"REDIS_URL": settings.redis_url, "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 1, out
    assert "asked 1 worker(s)" in out.stdout
    assert "ghost-worker" in out.stderr
    assert "clean-stuck-jobs" in out.stderr
    assert fleet.proc.wait(60) == 0


def test_retry_waits_for_its_backoff_interval(redis_conn, fleet_env, start_fleet) -> None:
    backoff = Settings.from_env({**fleet_env, "FINEX_RETRY_INTERVALS": "3"})
    q = get_queue("matrix", redis_conn)
    job_id = enqueue.enqueue_unique(
        q, "tests.support.testjobs.flaky_job", {"key": "bo", "fail_times": 1}, "flaky-bo", backoff
    ).job_id
    fleet = start_fleet(["matrix"])
    fleet.wait_ready(redis_conn)
    wait_for("first attempt", lambda: redis_conn.get("test:calls:bo") == b"1")
    failed_at = time.monotonic()
    wait_for(
        "job parked in the scheduled registry",
        lambda: control.queue_state(redis_conn, "matrix").delayed == 1,
    )
    wait_for("retry", lambda: status(redis_conn, job_id) == "finished", timeout=20)
    assert time.monotonic() - failed_at >= 2.5
    assert control.list_dlq(redis_conn, "matrix") == []


def test_growth_and_probability_updates_enqueue_their_matrix_row_and_columns(
    redis_conn, db, settings, start_fleet
) -> None:
    from finex_workers import domain

    domain.seed(db, assets=5, scenarios=6, days=30)
    asset = domain.asset_ids(db, chunk=100)[0][0]
    scenario = domain.scenario_ids(db)[0]
    members = domain.group_members(db, scenario)
    enqueue.growth(redis_conn, settings, asset)
    enqueue.probability(redis_conn, settings, scenario)
    for queue in ("growth", "probability"):
        fleet = start_fleet([queue], burst=True)
        assert fleet.proc.wait(60) == 0
    matrix = get_queue("matrix", redis_conn)
    pending = {job.id: job.kwargs for job in matrix.get_jobs()}
    assert pending[f"matrix-row-{asset}"] == {"asset_ids": [asset]}
    column_jobs = [kw for kw in pending.values() if "scenario_ids" in kw]
    assert column_jobs == [{"scenario_ids": sorted(members)}]


def test_importing_the_job_code_opens_no_connections() -> None:
    code = (
        "import os, finex_workers.jobs, finex_workers.runtime.worker, "
        "finex_workers.runtime.supervisor, finex_workers.cli, finex_workers.control\n"
        "import stat\n"
        "def is_socket(fd):\n"
        "    try:\n"
        "        return stat.S_ISSOCK(os.fstat(fd).st_mode)\n"
        "    except OSError:\n"
        "        return False\n"
        "print(sum(is_socket(fd) for fd in range(1024)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_job_stranded_between_pop_and_start_is_returned_to_its_queue(
    redis_conn, db, settings, start_fleet
) -> None:
    job_id = probe(redis_conn, settings, "matrix", "stranded")
    q = get_queue("matrix", redis_conn)
    # What a worker SIGKILLed right after BLMOVE leaves behind: the id in RQ's intermediate list.
    assert redis_conn.lmove(q.key, q.intermediate_queue_key) == job_id.encode()
    assert control.queue_state(redis_conn, "matrix").waiting == 0

    report = control.clean_stuck_jobs(redis_conn, "matrix")
    assert report.requeued == [job_id]
    assert redis_conn.lrange(q.key, 0, -1) == [job_id.encode()]
    assert redis_conn.llen(q.intermediate_queue_key) == 0

    start_fleet(["matrix"])
    wait_for("stranded job to run", lambda: probe_row(db, "stranded") == (1, True))


def test_job_registered_but_not_yet_started_by_a_dead_worker_goes_back_without_using_an_attempt(
    redis_conn, db, settings, start_fleet
) -> None:
    job_id = probe(redis_conn, settings, "growth", "half-started")
    retries = Job.fetch(job_id, connection=redis_conn).retries_left
    q = get_queue("growth", redis_conn)
    # A real worker's first two steps, then nothing: what a SIGKILL between RQ registering the
    # execution and marking the job started leaves behind.
    worker = FinexWorker([q], connection=redis_conn, name="dies-before-start")
    worker.register_birth()
    try:
        taken = worker.dequeue_job_and_maintain_ttl(timeout=1)
        assert taken is not None
        worker.prepare_execution(taken[0])
    finally:
        worker.unsubscribe()
    assert status(redis_conn, job_id) == "queued"
    assert control.active_jobs(redis_conn, "growth") == 1
    assert redis_conn.lrange(q.intermediate_queue_key, 0, -1) == [job_id.encode()]
    # The process is gone but its registration has not expired yet, as right after a SIGKILL.
    dead = subprocess.Popen(["true"])
    dead.wait()
    redis_conn.hset(worker.key, "pid", dead.pid)
    registered = Worker.all(connection=redis_conn, queue=q)
    assert [w.name for w in registered] == [worker.name]
    assert control.live_workers(redis_conn, "growth") == []  # nobody listens: not live

    report = control.clean_stuck_jobs(redis_conn, "growth")
    assert report.requeued == [job_id]
    assert "before the job started" in report.reasons[job_id]
    assert redis_conn.lrange(q.key, 0, -1) == [job_id.encode()]
    assert redis_conn.llen(q.intermediate_queue_key) == 0
    assert control.active_jobs(redis_conn, "growth") == 0
    assert Job.fetch(job_id, connection=redis_conn).retries_left == retries

    start_fleet(["growth"])
    wait_for("the job to run", lambda: probe_row(db, "half-started") == (1, True))


def test_retry_dlq_killed_half_way_loses_no_job(redis_conn, fleet_env, settings) -> None:
    from rq.registry import FailedJobRegistry

    q = get_queue("growth", redis_conn)
    registry = FailedJobRegistry("growth", redis_conn)
    total = 3000
    with redis_conn.pipeline() as pipe:
        for n in range(total):
            job = q.create_job("finex_workers.runtime.jobs.noop_job", job_id=f"dead-{n}")
            job.save(pipeline=pipe)
            registry.add(job, ttl=3600, exc_string="boom", pipeline=pipe)
        pipe.execute()
    assert len(control.list_dlq(redis_conn, "growth", limit=5)) == 5

    proc = subprocess.Popen(
        [sys.executable, "-m", "finex_workers.cli", "workers", "retry-dlq", "--worker", "growth"],
        env={**os.environ, **fleet_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for("retry-dlq to be under way", lambda: redis_conn.llen(q.key) >= 200)
    proc.kill()  # SIGKILL half-way through the bulk retry
    proc.wait()

    in_queue = {x.decode() for x in redis_conn.lrange(q.key, 0, -1)}
    in_dlq = {x.decode() for x in redis_conn.zrange(registry.key, 0, -1)}
    assert 0 < len(in_queue) < total  # it really was cut off half-way
    assert in_queue.isdisjoint(in_dlq)
    assert in_queue | in_dlq == {f"dead-{n}" for n in range(total)}
    for job_id in list(in_queue)[:50]:
        assert status(redis_conn, job_id) == "queued"


def test_dlq_summaries_agree_with_the_full_listing(redis_conn, settings, start_fleet) -> None:
    q = get_queue("probability", redis_conn)
    for n in range(3):
        enqueue.enqueue_unique(
            q, "tests.support.testjobs.always_fails", {"reason": str(n)}, f"sum-{n}", settings
        )

    def burst_until_all_three_failed() -> None:
        # Wait for what the burst does (its start takes what the machine gives it), then for the
        # exit, which must follow at once: a burst worker quits when its claim finds no job.
        fleet = start_fleet(["probability"], burst=True, FINEX_RETRY_MAX="0")
        wait_for(
            "the 3 jobs in the DLQ, none waiting",
            lambda: len(control.list_dlq(redis_conn, "probability")) == 3 and q.count == 0,
            timeout=120,
        )
        assert fleet.proc.wait(STOP_BOUND) == 0

    burst_until_all_three_failed()
    full = control.list_dlq(redis_conn, "probability")
    assert len(full) == 3
    control.retry_dlq(redis_conn, "probability", [full[0].id])  # bumps its retry count
    burst_until_all_three_failed()
    full = {j.id: j for j in control.list_dlq(redis_conn, "probability")}
    summaries = control.dlq_summaries(redis_conn, "probability")
    assert {s.id for s in summaries} == set(full)
    for s in summaries:
        assert s.dlq_retries == full[s.id].dlq_retries
        assert s.failed_at is not None
        assert s.failed_at.isoformat() == full[s.id].failed_at
    assert sorted(s.dlq_retries for s in summaries) == [0, 0, 1]


def test_two_sweepers_at_once_requeue_each_abandoned_job_exactly_once(redis_conn) -> None:
    import threading

    from rq.registry import StartedJobRegistry

    q = get_queue("growth", redis_conn)
    started = StartedJobRegistry("growth", redis_conn)
    ids = [f"abandoned-{n}" for n in range(200)]
    with redis_conn.pipeline() as pipe:
        for job_id in ids:
            job = q.create_job("finex_workers.runtime.jobs.noop_job", job_id=job_id)
            job.retries_left = 2
            job.save(pipeline=pipe)
            pipe.hset(job.key, "status", "started")
            # Heartbeat expired a minute ago: every sweeper judges it abandoned.
            pipe.zadd(started.key, {f"{job_id}:exec": time.time() - 60})
        pipe.execute()

    reports: list[control.CleanReport] = []
    sweepers = [
        threading.Thread(
            target=lambda: reports.append(control.clean_stuck_jobs(redis_conn, "growth"))
        )
        for _ in range(4)
    ]
    for t in sweepers:
        t.start()
    for t in sweepers:
        t.join()

    queued = [x.decode() for x in redis_conn.lrange(q.key, 0, -1)]
    assert sorted(queued) == sorted(ids)  # each once: no job twice, none lost
    assert sorted(j for r in reports for j in r.requeued) == sorted(ids)
    assert redis_conn.zcard(started.key) == 0
    assert {status(redis_conn, j) for j in ids} == {"queued"}
