"""A real Prometheus server scrapes a real `finex exporter` and evaluates the shipped rules.

Jobs in a real Redis drive the numbers: more than 100 waiting on a paused queue (QueueBacklog),
and work waiting on an unpaused queue with no worker (BacklogWithoutWorkers). Prometheus runs
with 1s scrape and evaluation intervals; the rules are the shipped file with every `for:`
shortened to 1s, so the test takes seconds, not minutes. promtool tests the shipped `for:`s.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from finex_workers import control
from finex_workers.core.settings import Settings
from finex_workers.dev.localservices import free_port, port_open
from finex_workers.infra.redisconn import get_queue
from finex_workers.runtime import enqueue
from tests.support.exporter import running_exporter
from tests.support.promtool import RULES
from tests.support.waiting import wait_for


def fast_rules(path: Path) -> None:
    """The shipped rules with every `for:` at 1s; everything else unchanged."""
    data = yaml.safe_load(RULES.read_text())
    for group in data["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    path.write_text(yaml.safe_dump(data, sort_keys=False))


class Prometheus:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.proc = proc
        self.log = log

    def api(self, path: str) -> dict:
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}", timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def alerts(self) -> list[dict]:
        return self.api("alerts")["alerts"]


@pytest.fixture
def exporter_url(redis_url: str) -> Iterator[str]:
    with running_exporter(redis_url) as url:
        yield url


@pytest.fixture
def prometheus(exporter_url: str) -> Iterator[Prometheus]:
    with running_prometheus(exporter_url) as server:
        yield server


@contextmanager
def running_prometheus(exporter_url: str) -> Iterator[Prometheus]:
    """/usr/bin/prometheus on a free loopback port, scraping exporter_url as finex-exporter."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    workdir = Path(tempfile.mkdtemp(prefix="finex-prometheus-"))
    fast_rules(workdir / "rules.yml")
    target = exporter_url.removeprefix("http://").removesuffix("/metrics")
    (workdir / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(workdir / "rules.yml")],
                "scrape_configs": [
                    {"job_name": "finex-exporter", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_for(
            "prometheus to listen",
            lambda: proc.poll() is not None or port_open("127.0.0.1", port),
            timeout=30,
        )
        assert proc.poll() is None, log.read_text()
        # The port opens before the TSDB is loaded; the API answers 503 until /-/ready does.
        wait_for("prometheus to be ready", server.ready, timeout=30)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def test_real_prometheus_fires_backlog_alerts_from_real_jobs(
    redis_conn, fleet_env, prometheus: Prometheus
) -> None:
    settings = Settings.from_env(fleet_env)
    # Prometheus scrapes the exporter, and the rules loaded (all of them, from the shipped file).
    wait_for(
        "the exporter target to be up",
        lambda: any(t["health"] == "up" for t in prometheus.api("targets")["activeTargets"]),
        timeout=30,
    )
    groups = prometheus.api("rules")["groups"]
    shipped = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert len([r for g in groups for r in g["rules"]]) == len(shipped)

    control.pause(redis_conn, "matrix")
    matrix = get_queue("matrix", redis_conn)
    for n in range(120):
        enqueue.enqueue_unique(
            matrix,
            "finex_workers.runtime.jobs.probe_job",
            {"probe_id": f"b{n}"},
            f"probe-b{n}",
            settings,
        )
    enqueue.enqueue_unique(
        get_queue("growth", redis_conn),
        "finex_workers.runtime.jobs.probe_job",
        {"probe_id": "lonely"},
        "probe-lonely",
        settings,
    )

    def firing() -> set[tuple[str, str]]:
        return {
            (a["labels"]["alertname"], a["labels"].get("queue", ""))
            for a in prometheus.alerts()
            if a["state"] == "firing"
        }

    fired = wait_for(
        "QueueBacklog(matrix) and BacklogWithoutWorkers(growth) to fire",
        lambda: (
            (f := firing()) >= {("QueueBacklog", "matrix"), ("BacklogWithoutWorkers", "growth")}
            and f
        ),
        timeout=60,
    )
    # matrix is paused on purpose: a backlog, but not an unattended one. growth has 1 job.
    assert ("BacklogWithoutWorkers", "matrix") not in fired
    assert ("QueueBacklog", "growth") not in fired
    assert not {name for name, _ in fired} & {"FinexExporterDown", "StuckJobs", "HighFailureRate"}
    backlog = next(
        a
        for a in prometheus.alerts()
        if a["labels"]["alertname"] == "QueueBacklog" and a["labels"]["queue"] == "matrix"
    )
    assert float(backlog["value"]) == 120
    assert backlog["annotations"]["runbook_url"] == "docs/runbook.md#queuebacklog"

    # Draining the backlog resolves the alert.
    control.resume(redis_conn, "matrix")
    redis_conn.delete(matrix.key)
    wait_for(
        "QueueBacklog to resolve", lambda: ("QueueBacklog", "matrix") not in firing(), timeout=30
    )


def test_real_prometheus_fires_exporter_down(redis_url) -> None:
    """Stop the exporter under a running Prometheus: up drops to 0 and the alert fires."""
    exporter = running_exporter(redis_url)
    url = exporter.__enter__()
    stopped = False
    try:
        with running_prometheus(url) as server:
            wait_for(
                "the exporter target to be up",
                lambda: any(t["health"] == "up" for t in server.api("targets")["activeTargets"]),
                timeout=30,
            )
            # Before the first scrape `absent(up)` may fire (with `for` at 1s); once scraped,
            # the alert must clear.
            wait_for(
                "FinexExporterDown to clear while the exporter is up",
                lambda: (
                    not [
                        a
                        for a in server.alerts()
                        if a["labels"]["alertname"] == "FinexExporterDown"
                    ]
                ),
                timeout=30,
            )
            exporter.__exit__(None, None, None)
            stopped = True
            wait_for(
                "FinexExporterDown to fire",
                lambda: any(
                    a["labels"]["alertname"] == "FinexExporterDown"
                    and a["state"] == "firing"
                    and a["labels"].get("instance") == url.split("/")[2]  # the up == 0 branch
                    for a in server.alerts()
                ),
                timeout=60,
            )
    finally:
        if not stopped:
            exporter.__exit__(None, None, None)
