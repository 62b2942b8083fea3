"""The queue exporter and the workers' metrics against real Redis, PostgreSQL and workers."""

from __future__ import annotations

import time

import redis
from rq.registry import FailedJobRegistry

from finex_workers import control
from finex_workers.core.names import QUEUE_NAMES
from finex_workers.core.settings import Settings
from finex_workers.dev.localservices import free_port
from finex_workers.infra.redisconn import get_queue, redis_from_url
from finex_workers.observability.metrics import exporter_registry
from finex_workers.runtime import enqueue
from tests.support.exporter import running_exporter, scrape, value
from tests.support.fleet import probe
from tests.support.waiting import wait_for


def doomed(conn: redis.Redis, settings: Settings, queue: str, name: str) -> str:
    return enqueue.enqueue_unique(
        get_queue(queue, conn),
        "tests.support.testjobs.always_fails",
        {"reason": name},
        f"doomed-{name}",
        settings,
    ).job_id


def sample(registry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_exporter_reports_the_runbook_numbers_from_redis(redis_url, redis_conn, settings) -> None:
    registry = exporter_registry(lambda: redis_from_url(redis_url), QUEUE_NAMES)
    for n in range(3):
        probe(redis_conn, settings, "matrix", f"m{n}")
    control.pause(redis_conn, "growth")
    redis_conn.zadd(FailedJobRegistry("probability", redis_conn).key, {"gone-1": time.time() + 60})
    redis_conn.hset("finex:stats:matrix", mapping={"completed": 41, "failed": 5})

    assert sample(registry, "finex_queue_jobs", queue="matrix", state="waiting") == 3
    assert sample(registry, "finex_queue_jobs", queue="matrix", state="active") == 0
    assert sample(registry, "finex_queue_jobs", queue="probability", state="failed") == 1
    assert sample(registry, "finex_queue_paused", queue="growth") == 1
    assert sample(registry, "finex_queue_paused", queue="matrix") == 0
    assert sample(registry, "finex_jobs_completed_total", queue="matrix") == 41
    assert sample(registry, "finex_jobs_failed_total", queue="matrix") == 5
    assert sample(registry, "finex_jobs_failed_total", queue="growth") == 0
    assert sample(registry, "finex_queue_workers", queue="matrix") == 0
    assert sample(registry, "finex_queue_oldest_active_job_age_seconds", queue="matrix") == 0
    assert sample(registry, "finex_queue_demand", queue="matrix") == 3


def test_every_exported_sample_carries_a_queue_label(redis_url) -> None:
    registry = exporter_registry(lambda: redis_from_url(redis_url), QUEUE_NAMES)
    samples = [
        s for family in registry.collect() for s in family.samples if s.name != "finex_build_info"
    ]
    assert samples
    assert all(s.labels.get("queue") in QUEUE_NAMES for s in samples)


def test_exporter_reports_its_build_as_a_gauge_of_one(redis_url) -> None:
    from importlib.metadata import version

    registry = exporter_registry(lambda: redis_from_url(redis_url), QUEUE_NAMES)
    [family] = [f for f in registry.collect() if f.name == "finex_build_info"]
    assert family.type == "gauge"
    [build] = family.samples
    assert build.value == 1
    assert build.labels["version"] == version("finex-workers")
    assert set(build.labels) == {"version", "rq_version", "python_version"}


def test_oldest_active_age_follows_a_running_job_and_workers_are_counted(
    redis_url, redis_conn, settings, start_fleet
) -> None:
    registry = exporter_registry(lambda: redis_from_url(redis_url), QUEUE_NAMES)
    fleet = start_fleet(["growth"], GROWTH_WORKER_CONCURRENCY="2")
    fleet.wait_ready(redis_conn, per_queue=2)
    assert sample(registry, "finex_queue_workers", queue="growth") == 2

    before = time.time()
    probe(redis_conn, settings, "growth", "long", hold=6)
    wait_for("the job to start", lambda: control.active_jobs(redis_conn, "growth") == 1)
    # A running job is demand too (a list-length scaler would see 0 here).
    assert sample(registry, "finex_queue_demand", queue="growth") == 1
    time.sleep(1.5)
    age = sample(registry, "finex_queue_oldest_active_job_age_seconds", queue="growth")
    elapsed = time.time() - before
    assert sample(registry, "finex_queue_jobs", queue="growth", state="active") == 1
    # It started after `before` and at least 1.5 s before the scrape: bounds from the test's own
    # clock, so a slow machine widens them instead of failing the test.
    assert age is not None
    assert 1.0 <= age <= elapsed

    wait_for("the job to finish", lambda: control.active_jobs(redis_conn, "growth") == 0)
    assert sample(registry, "finex_queue_oldest_active_job_age_seconds", queue="growth") == 0
    assert sample(registry, "finex_jobs_completed_total", queue="growth") == 1
    assert sample(registry, "finex_queue_jobs", queue="growth", state="completed") == 1


def test_completed_and_failed_counters_survive_a_fleet_restart(
    redis_url, redis_conn, settings, start_fleet
) -> None:
    fleet = start_fleet(["matrix"])
    fleet.wait_ready(redis_conn)
    probe(redis_conn, settings, "matrix", "a")
    doomed(redis_conn, settings, "matrix", "x")
    wait_for("x in the DLQ", lambda: control.queue_state(redis_conn, "matrix").failed == 1)
    wait_for("a done", lambda: control.queue_state(redis_conn, "matrix").completed == 1)
    fleet.close()

    fleet = start_fleet(["matrix"])
    fleet.wait_ready(redis_conn)
    probe(redis_conn, settings, "matrix", "b")
    wait_for("b done", lambda: control.queue_state(redis_conn, "matrix").completed == 2)

    # A new exporter process too: nothing it reports was held in a process's memory.
    with running_exporter(redis_url) as url:
        samples = scrape(url)
    assert value(samples, "finex_jobs_completed_total", queue="matrix") == 2
    # FINEX_RETRY_MAX=2 in the fleet env: the first attempt and two retries all failed.
    assert value(samples, "finex_jobs_failed_total", queue="matrix") == 3
    assert value(samples, "finex_queue_jobs", queue="matrix", state="failed") == 1


def test_worker_metrics_add_up_across_worker_processes(redis_conn, settings, start_fleet) -> None:
    port = free_port()
    fleet = start_fleet(
        ["growth"],
        args=("--metrics-port", str(port), "--metrics-host", "127.0.0.1"),
        GROWTH_WORKER_CONCURRENCY="3",
    )
    fleet.wait_ready(redis_conn, per_queue=3)
    for n in range(9):
        probe(redis_conn, settings, "growth", f"p{n}", hold=0.2)
    doomed(redis_conn, settings, "growth", "y")
    wait_for(
        "9 probes done and y in the DLQ",
        lambda: (
            control.queue_state(redis_conn, "growth").completed == 9
            and control.queue_state(redis_conn, "growth").failed == 1
        ),
    )
    url = f"http://127.0.0.1:{port}/metrics"
    samples = wait_for(
        "the supervisor's metrics to show 9 completed",
        lambda: (
            (s := scrape(url))
            and value(s, "finex_worker_jobs_total", queue="growth", outcome="completed") == 9
            and s
        ),
    )
    assert value(samples, "finex_worker_jobs_total", queue="growth", outcome="failed") == 3
    assert (
        value(samples, "finex_job_duration_seconds_count", queue="growth", outcome="completed") == 9
    )
    total = value(samples, "finex_job_duration_seconds_sum", queue="growth", outcome="completed")
    assert total is not None
    assert total >= 9 * 0.2
    fast = value(
        samples, "finex_job_duration_seconds_bucket", queue="growth", outcome="completed", le="0.1"
    )
    assert fast == 0
    # More than one process did the work, so the sum really is across processes.
    busy = [w for w in control.live_workers(redis_conn, "growth") if w.successful_job_count]
    assert len(busy) >= 2
