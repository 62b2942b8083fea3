"""Worker metrics on a fresh registry, read the way prometheus_client's own tests read them."""

from prometheus_client import CollectorRegistry

from finex_workers.observability.metrics import WorkerMetrics, exported_names


def test_observe_counts_outcome_and_duration_per_queue() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry=registry)
    metrics.observe("growth", ok=True, seconds=0.2)
    metrics.observe("growth", ok=True, seconds=3.0)
    metrics.observe("growth", ok=False, seconds=0.02)

    ok = {"queue": "growth", "outcome": "completed"}
    failed = {"queue": "growth", "outcome": "failed"}
    assert registry.get_sample_value("finex_worker_jobs_total", ok) == 2
    assert registry.get_sample_value("finex_worker_jobs_total", failed) == 1
    assert registry.get_sample_value("finex_job_duration_seconds_count", ok) == 2
    assert registry.get_sample_value("finex_job_duration_seconds_sum", ok) == 3.2
    assert registry.get_sample_value("finex_job_duration_seconds_bucket", {**ok, "le": "0.25"}) == 1
    other_queue = {"queue": "matrix", "outcome": "completed"}
    assert registry.get_sample_value("finex_worker_jobs_total", other_queue) is None


def test_a_negative_clock_step_is_recorded_as_zero() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry=registry).observe("matrix", ok=True, seconds=-0.5)
    labels = {"queue": "matrix", "outcome": "completed"}
    assert registry.get_sample_value("finex_job_duration_seconds_sum", labels) == 0


def test_exported_names_include_suffixed_samples() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry=registry).observe("matrix", ok=True, seconds=1)
    names = exported_names(registry)
    assert {"finex_worker_jobs_total", "finex_job_duration_seconds_bucket"} <= names
