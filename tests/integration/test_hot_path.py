"""The worker's one-round-trip claim and finish leave exactly what RQ's own worker leaves.

RQ's tools (rq info, rq-dashboard, the registries' APIs) must see a job our worker runs as one
that RQ ran: these tests read it back through RQ's own classes, never through our code.
"""

from __future__ import annotations

from rq.executions import ExecutionRegistry
from rq.job import Job, JobStatus
from rq.registry import FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.worker import Worker

from finex_workers import control
from finex_workers.infra.redisconn import get_queue
from finex_workers.runtime import enqueue
from tests.support.fleet import probe
from tests.support.waiting import wait_for


def test_a_running_job_is_started_as_rq_sees_it(redis_conn, db, settings, start_fleet) -> None:
    fleet = start_fleet(["growth"], GROWTH_WORKER_CONCURRENCY="1")
    fleet.wait_ready(redis_conn)
    job_id = probe(redis_conn, settings, "growth", "seen-by-rq", hold=2.0)
    q = get_queue("growth", redis_conn)
    wait_for("the job to start", lambda: StartedJobRegistry("growth", redis_conn).get_job_ids())

    job = Job.fetch(job_id, connection=redis_conn)
    assert job.get_status() == JobStatus.STARTED
    assert job.started_at is not None
    [worker] = Worker.all(connection=redis_conn, queue=q)
    assert job.worker_name == worker.name
    assert worker.get_state() == "busy"
    assert [e.job_id for e in worker.get_current_executions()] == [job_id]
    assert worker.get_current_job_id() == job_id
    assert len(ExecutionRegistry(job_id, redis_conn).get_execution_ids()) == 1
    assert redis_conn.ttl(job.key) == -1  # kept while it runs, like RQ's PERSIST
    assert redis_conn.llen(q.intermediate_queue_key) == 0  # never popped-but-not-started
    assert control.queue_state(redis_conn, "growth").active == 1

    wait_for("the job to finish", lambda: job.get_status(refresh=True) == JobStatus.FINISHED)
    assert FinishedJobRegistry("growth", redis_conn).get_job_ids() == [job_id]
    assert StartedJobRegistry("growth", redis_conn).get_job_ids() == []
    assert ExecutionRegistry(job_id, redis_conn).get_execution_ids() == []
    result = job.latest_result()
    assert result is not None
    assert result.type == Result.Type.SUCCESSFUL
    assert result.return_value == {"probe_id": "seen-by-rq", "runs": 1}
    worker.refresh()
    assert worker.successful_job_count == 1
    assert worker.get_state() == "idle"
    assert 0 < redis_conn.ttl(job.key) <= job.get_result_ttl(500)


def test_jobs_with_dependents_still_release_them(redis_conn, db, settings, start_fleet) -> None:
    # A job with dependents takes RQ's own success path, which enqueues them.
    q = get_queue("growth", redis_conn)
    first = probe(redis_conn, settings, "growth", "parent")
    child = q.enqueue(
        "finex_workers.runtime.jobs.probe_job",
        kwargs={"probe_id": "child"},
        job_id="probe-child",
        depends_on=first,
    )
    assert child.get_status() == JobStatus.DEFERRED
    start_fleet(["growth"], GROWTH_WORKER_CONCURRENCY="1").wait_ready(redis_conn)
    wait_for("the dependent to run", lambda: child.get_status(refresh=True) == JobStatus.FINISHED)
    rows = db.execute("SELECT probe_id, runs FROM finex_probes ORDER BY probe_id").fetchall()
    assert rows == [("child", 1), ("parent", 1)]


def test_a_bad_payload_still_goes_to_the_dlq_and_the_worker_goes_on(
    redis_conn, db, settings, start_fleet
) -> None:
    q = get_queue("growth", redis_conn)
    bad = enqueue.enqueue_unique(
        q, "finex_workers.runtime.jobs.growth_job", {"asset_id": "x"}, "bad-x", settings
    ).job_id
    good = probe(redis_conn, settings, "growth", "after-bad")
    start_fleet(["growth"], GROWTH_WORKER_CONCURRENCY="1").wait_ready(redis_conn)
    wait_for("the good job", lambda: Job.fetch(good, connection=redis_conn).is_finished)
    [dead] = control.list_dlq(redis_conn, "growth")
    assert dead.id == bad
    assert "asset_id must be an integer id" in dead.error


def test_the_finish_script_records_a_success_once(redis_conn, db, settings, start_fleet) -> None:
    # What a retry after a lost reply does: the same finish again. The second is a no-op.
    from finex_workers.control import scripts

    start_fleet(["growth"], GROWTH_WORKER_CONCURRENCY="1").wait_ready(redis_conn)
    job_id = probe(redis_conn, settings, "growth", "finish-once")
    job = Job.fetch(job_id, connection=redis_conn)
    wait_for("the job to finish", lambda: job.get_status(refresh=True) == JobStatus.FINISHED)
    stats = redis_conn.hgetall("finex:stats:growth")
    results = redis_conn.xlen(Result.get_key(job_id))
    [worker] = Worker.all(connection=redis_conn, queue=get_queue("growth", redis_conn))
    started = StartedJobRegistry("growth", redis_conn).key
    again = scripts.script(redis_conn, "finish")(
        keys=[job.key, Result.get_key(job_id), "k3", "k4", started,
              "k6", worker.key, "k8", "finex:stats:growth", "k10", "k11"],
        args=[job_id, "2026-01-01T00:00:00.000000Z", 500, 1, f"{job_id}:gone", "gone", 0.1,
              "type", "1"],
    )  # fmt: skip
    assert again == 0
    assert redis_conn.hgetall("finex:stats:growth") == stats
    assert redis_conn.xlen(Result.get_key(job_id)) == results
