"""The shipped alert rules: promtool proves each fires, stays quiet and honours its `for:`;
their annotations point at real runbook sections; and every metric name used by the rules and
the dashboard is one the code really exports (names read from real scrapes, not from a list)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from finex_workers import control
from finex_workers.core.settings import Settings
from finex_workers.dev.localservices import free_port
from finex_workers.infra.redisconn import get_queue
from finex_workers.runtime import enqueue
from tests.support.exporter import running_exporter, scrape
from tests.support.promtool import (
    DASHBOARD,
    RULES,
    RULES_TEST,
    RUNBOOK,
    dashboard_exprs,
    github_anchors,
    metric_names,
    rules,
)
from tests.support.waiting import wait_for


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: run hack/bootstrap.sh (Debian package prometheus)"
    return path


def test_rules_file_passes_promtool_check() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", str(RULES_TEST)],
        capture_output=True,
        text=True,
        check=False,
        cwd=RULES_TEST.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_runbook_alerts_exist_with_its_thresholds() -> None:
    by_name = {r["alert"]: r for r in rules()}
    assert {
        "HighFailureRate",
        "QueueBacklog",
        "StuckJobs",
        "DLQGrowing",
        "BacklogWithoutWorkers",
        "FinexExporterDown",
    } <= set(by_name)
    assert "> 0.10" in by_name["HighFailureRate"]["expr"]
    assert "> 100" in by_name["QueueBacklog"]["expr"]
    assert "> 600" in by_name["StuckJobs"]["expr"]


def test_every_alert_is_unit_tested_firing_and_quiet_at_its_boundary() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    cases = [case for t in tests for case in t.get("alert_rule_test", [])]
    for rule in rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{rule['alert']} never tested firing"
        assert any(not c["exp_alerts"] for c in mine), f"{rule['alert']} never tested quiet"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_every_alert_has_summary_description_and_a_runbook_anchor(rule) -> None:
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    url = annotations["runbook_url"]
    path, _, anchor = url.partition("#")
    assert path == "docs/runbook.md"
    assert anchor in github_anchors(RUNBOOK), f"no section #{anchor} in docs/runbook.md"


def test_dashboard_is_valid_json_with_a_queue_variable() -> None:
    data = json.loads(DASHBOARD.read_text())
    variables = {v["name"] for v in data["templating"]["list"]}
    assert "queue" in variables
    exprs = [
        t["expr"] for p in data["panels"] if p.get("type") != "row" for t in p.get("targets", [])
    ]
    assert exprs
    assert all('queue=~"$queue"' in e for e in exprs if "finex_" in e)


def test_rules_and_dashboard_use_only_exported_metric_names(
    redis_url, redis_conn, fleet_env, start_fleet
) -> None:
    """Names from real scrapes: the exporter, and a supervisor's --metrics-port after one
    completed and one failed job (multiprocess metrics appear once observed)."""
    settings = Settings.from_env(fleet_env)
    port = free_port()
    fleet = start_fleet(
        ["matrix"], args=("--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    )
    fleet.wait_ready(redis_conn)
    queue = get_queue("matrix", redis_conn)
    enqueue.enqueue_unique(
        queue,
        "finex_workers.runtime.jobs.probe_job",
        {"probe_id": "names"},
        "probe-names",
        settings,
    )
    enqueue.enqueue_unique(
        queue, "tests.support.testjobs.always_fails", {"reason": "names"}, "fail-names", settings
    )
    wait_for("one DLQ entry", lambda: control.queue_state(redis_conn, "matrix").failed == 1)
    metrics_url = f"http://127.0.0.1:{port}/metrics"

    def worker_scrape():
        samples = scrape(metrics_url)
        return samples if any(n == "finex_worker_jobs_total" for n, _ in samples) else None

    worker_names = {name for name, _ in wait_for("worker metrics", worker_scrape)}
    with running_exporter(redis_url) as url:
        exporter_names = {name for name, _ in scrape(url)}
    exported = worker_names | exporter_names

    used_by_rules = metric_names([r["expr"] for r in rules()])
    used_by_dashboard = metric_names(dashboard_exprs())
    assert used_by_rules
    assert used_by_dashboard
    assert used_by_rules - exported == set()
    assert used_by_dashboard - exported == set()
