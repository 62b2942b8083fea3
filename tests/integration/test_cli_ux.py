"""What a newcomer and an operator see from `finex` (issue 13): one-line errors, --json fields,
worker listings, restart, a worker fleet waiting for Redis, the dev-server discovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import redis

from finex_workers import control
from finex_workers.core.settings import Settings
from finex_workers.dev import devserver, devstate
from finex_workers.dev.localservices import free_port
from finex_workers.infra.redisconn import get_queue
from finex_workers.runtime import enqueue
from tests.integration.test_cli import finex
from tests.support.exporter import running_exporter
from tests.support.fleet import ROOT, probe
from tests.support.waiting import wait_for

SECRET = "s3cret"


def dead_redis() -> str:
    return f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"


def dead_postgres() -> str:
    return f"postgresql://app:{SECRET}@127.0.0.1:{free_port()}/finex"


def assert_one_line(out: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert out.returncode == code, out.stderr
    assert "Traceback" not in out.stderr
    assert SECRET not in out.stderr + out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    for needle in needles:
        assert needle in lines[0]


REDIS_VERBS = [
    ("workers", "status"),
    ("workers", "status", "--json"),
    ("workers", "pause"),
    ("workers", "resume"),
    ("workers", "stop"),
    ("workers", "restart"),
    ("workers", "clean-stuck-jobs"),
    ("workers", "list-dlq"),
    ("workers", "retry-dlq"),
    ("workers", "empty-dlq", "--yes"),
    ("enqueue", "growth", "1"),
]


@pytest.mark.parametrize("argv", REDIS_VERBS, ids=" ".join)
def test_an_unreachable_redis_is_one_line_naming_the_variable(argv, database_url) -> None:
    url = dead_redis()
    out = finex({"REDIS_URL": url, "DATABASE_URL": database_url}, *argv)
    redacted = url.replace(SECRET, "***")
    assert_one_line(out, 3, f"cannot reach Redis at REDIS_URL={redacted}", "Connection refused")


@pytest.mark.parametrize("argv", [("db", "migrate"), ("seed",), ("enqueue", "full")], ids=" ".join)
def test_an_unreachable_postgres_is_one_line_naming_the_variable(argv, redis_url) -> None:
    url = dead_postgres()
    out = finex({"REDIS_URL": redis_url, "DATABASE_URL": url}, *argv)
    assert_one_line(out, 3, "cannot reach PostgreSQL at DATABASE_URL=postgresql://app:***@")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"REDIS_URL": f"http://u:{SECRET}@cache:6379/0"}, "REDIS_URL=http://u:***@cache:6379/0"),
        ({"REDIS_URL": "redis://127.0.0.1:70000/0"}, "REDIS_URL=redis://127.0.0.1:70000/0 has"),
        ({"DATABASE_URL": f"mysql://u:{SECRET}@db/x"}, "DATABASE_URL=mysql://u:***@db/x has"),
    ],
)
@pytest.mark.parametrize(
    "argv", [("workers", "status"), ("workers", "start"), ("seed",), ("exporter",)]
)
def test_an_unusable_url_is_a_configuration_error_in_every_verb(env, needle, argv) -> None:
    out = finex(env, *argv)
    assert_one_line(out, 2, "finex: configuration error:", needle)


def test_workers_start_waits_for_a_dead_redis_with_a_capped_backoff(fleet_env) -> None:
    env = {**os.environ, **fleet_env, "REDIS_URL": dead_redis(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "finex_workers.cli", "workers", "start"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(8)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=20)
    lines = output.strip().splitlines()
    assert proc.returncode == 0, output
    assert "Traceback" not in output
    assert SECRET not in output
    # 1 + 2 + 4 s: four attempts in 8 s, then the shutdown lines; a crash loop wrote hundreds.
    assert 3 <= len(lines) <= 8, output
    assert "cannot reach Redis at REDIS_URL=redis://:***@127.0.0.1" in lines[0]
    assert "retrying in 1s (attempt 1)" in lines[0]
    assert "retrying in 4s (attempt 3)" in output
    assert "no worker was started" in lines[-1]


def test_seed_twice_points_at_the_replace_flag(fleet_env) -> None:
    assert finex(fleet_env, "seed", "--assets", "3", "--scenarios", "1").returncode == 0
    out = finex(fleet_env, "seed", "--assets", "3", "--scenarios", "1")
    assert_one_line(out, 1, "pass --replace")
    assert "replace=True" not in out.stderr


def test_retry_dlq_names_an_id_that_is_not_there(fleet_env) -> None:
    out = finex(fleet_env, "workers", "retry-dlq", "--id", "nosuchjob")
    assert out.returncode == 1
    assert "job id(s) not found in the DLQ of any queue: nosuchjob" in out.stderr
    out = finex(fleet_env, "workers", "retry-dlq", "--id", "nosuchjob", "--json")
    assert json.loads(out.stdout) == {
        "sent": {"matrix": [], "growth": [], "probability": []},
        "not_found": ["nosuchjob"],
    }


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("enqueue", "growth"), "`growth` needs at least one id"),
        (("enqueue", "matrix"), "`matrix` needs at least one id"),
        (("enqueue", "full", "3"), "`full` takes no ids"),
        (("enqueue", "growth", "--", "-5"), "'-5' is not an id (ids are positive integers)"),
        (("enqueue", "probability", "0"), "'0' is not an id"),
        (("enqueue", "growth", "x1"), "'x1' is not an id"),
    ],
)
def test_enqueue_refuses_missing_or_bad_ids(argv, needle, fleet_env, redis_conn) -> None:
    out = finex(fleet_env, *argv)
    assert out.returncode == 2
    assert needle in out.stderr
    assert redis_conn.llen(get_queue("growth", redis_conn).key) == 0


def fields(out: subprocess.CompletedProcess[str]) -> object:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_every_reporting_verb_has_json_with_the_documented_fields(
    fleet_env, redis_conn, empty_database_url
) -> None:
    env = fleet_env
    [row] = fields(finex(env, "workers", "pause", "--worker", "growth", "--json"))
    assert row == {"queue": "growth", "paused": True, "changed": True}
    [row] = fields(finex(env, "workers", "resume", "--worker", "growth", "--json"))
    assert row == {"queue": "growth", "paused": False, "changed": True}
    [row] = fields(finex(env, "workers", "stop", "--worker", "growth", "--json"))
    assert row == {"queue": "growth", "asked": [], "unreachable": []}
    [row] = fields(finex(env, "workers", "status", "--worker", "growth", "--json"))
    assert set(row) == {
        "queue", "paused", "waiting", "active", "delayed", "failed", "completed", "workers",
        "outages", "last_outage", "holds", "paused_seconds", "quarantined", "last_quarantined",
        "live_workers",
        "dead_workers",
    }  # fmt: skip
    [row] = fields(finex(env, "workers", "clean-stuck-jobs", "--worker", "growth", "--json"))
    assert set(row) == {"queue", "requeued", "dead_lettered", "quarantined", "reasons"}
    assert fields(finex(env, "workers", "list-dlq", "--json")) == []
    assert fields(finex(env, "workers", "empty-dlq", "--yes", "--json")) == {
        "matrix": 0, "growth": 0, "probability": 0,
    }  # fmt: skip
    assert set(fields(finex(env, "workers", "retry-dlq", "--json"))) == {"sent", "not_found"}
    [row] = fields(finex(env, "workers", "restart", "--worker", "growth", "--json"))
    assert set(row) == {
        "queue", "was_paused", "active_at_pause", "drained", "stopped", "unreachable",
        "replacements", "resumed", "outcome", "ok",
    }  # fmt: skip
    assert row["outcome"] == "done"
    assert row["resumed"] is True

    migrated = fields(finex({**env, "DATABASE_URL": empty_database_url}, "db", "migrate", "--json"))
    assert "0001_domain" in migrated["applied"]
    seeded = fields(finex(env, "seed", "--assets", "4", "--scenarios", "2", "--json"))
    assert set(seeded) == {"assets", "prices", "scenario_groups", "scenarios", "shocks", "evidence"}
    assert seeded["assets"] == 4
    one = fields(finex(env, "enqueue", "growth", "1", "2", "--json"))
    assert one["what"] == "growth"
    assert one["created"] == 2
    assert one["deduplicated"] == 0
    assert [set(j) for j in one["jobs"]] == [{"ids", "job_id", "created"}] * 2
    assert one["jobs"][0]["ids"] == [1]
    full = fields(finex(env, "enqueue", "full", "--json"))
    assert set(full) == {"what", "created", "deduplicated", "jobs"}
    assert full["created"] + full["deduplicated"] > 0


def test_status_lists_live_workers_with_their_job_and_keeps_dead_ones_apart(
    fleet_env, redis_conn: redis.Redis, settings, start_fleet
) -> None:
    fleet = start_fleet(["growth"], GROWTH_WORKER_CONCURRENCY="2")
    fleet.wait_ready(redis_conn, per_queue=2)
    job_id = probe(redis_conn, settings, "growth", "held", hold=30)
    wait_for("the job to start", lambda: control.active_jobs(redis_conn, "growth") == 1)
    # The other worker says idle once it first waits for work; on a loaded machine it may still
    # be starting (rq's state 'started') when the job starts.
    idle = wait_for(
        "the other worker to wait for work",
        lambda: next(
            (w for w in control.live_workers(redis_conn, "growth") if w.get_state() == "idle"),
            None,
        ),
    )
    os.kill(idle.pid, signal.SIGKILL)  # registered until its TTL, nobody listening

    def status() -> dict:
        [row] = json.loads(
            finex(fleet_env, "workers", "status", "--worker", "growth", "--json").stdout
        )
        return row

    wait_for("a dead worker in status", lambda: status()["dead_workers"])
    row = status()
    assert [w["name"] for w in row["dead_workers"]] == [idle.name]
    assert row["workers"] == len(row["live_workers"])
    assert idle.name not in {w["name"] for w in row["live_workers"]}
    busy = next(w for w in row["live_workers"] if w["current_job"])
    assert busy["current_job"] == job_id
    assert busy["state"] == "busy"
    assert busy["job_age_seconds"] >= 0
    assert busy["pid"] > 0
    assert busy["host"]
    assert set(busy) == {
        "name", "queue", "pid", "host", "state", "current_job", "job_age_seconds",
        "last_heartbeat", "alive",
    }  # fmt: skip
    text = finex(fleet_env, "workers", "status", "--worker", "growth").stdout
    assert "live workers:" in text
    assert "dead but registered:" in text
    assert f"{job_id} (" in text


def test_restart_drains_stops_and_resumes_with_fresh_workers(
    fleet_env, redis_conn, start_fleet
) -> None:
    fleet = start_fleet(["growth"], args=("--respawn-stopped",), GROWTH_WORKER_CONCURRENCY="2")
    fleet.wait_ready(redis_conn, per_queue=2)
    before = {w.name for w in control.live_workers(redis_conn, "growth")}
    out = finex(fleet_env, "workers", "restart", "--worker", "growth")
    assert out.returncode == 0, out.stdout + out.stderr
    steps = [line.split(": ", 1)[1] for line in out.stdout.splitlines()]
    assert steps[0] == "paused"
    assert "drained: no active job" in steps
    assert "asked 2 worker(s) to stop" in steps
    assert "2 new worker(s) live" in steps
    assert steps[-1] == "resumed"
    after = {w.name for w in control.live_workers(redis_conn, "growth")}
    assert len(after) == 2
    assert not after & before
    assert not control.is_paused(redis_conn, "growth")


def test_restart_without_a_supervisor_that_respawns_says_so(
    fleet_env, redis_conn, start_fleet
) -> None:
    fleet = start_fleet(["growth"])
    fleet.wait_ready(redis_conn)
    out = finex(fleet_env, "workers", "restart", "--worker", "growth", "--start-timeout", "2")
    assert out.returncode == 1
    assert "no new worker within 2s" in out.stdout
    assert not control.is_paused(redis_conn, "growth")
    wait_for("the supervisor to exit", lambda: fleet.proc.poll() is not None)


def test_restart_leaves_a_paused_queue_paused_and_stops_on_a_drain_timeout(
    fleet_env, redis_conn, settings, start_fleet
) -> None:
    fleet = start_fleet(["growth"])
    fleet.wait_ready(redis_conn)
    probe(redis_conn, settings, "growth", "slow", hold=20)
    wait_for("the job to start", lambda: control.active_jobs(redis_conn, "growth") == 1)
    out = finex(
        fleet_env, "workers", "restart", "--worker", "growth", "--drain-timeout", "1", "--json"
    )
    assert out.returncode == 1
    [row] = json.loads(out.stdout)
    assert row["outcome"] == "drain-timeout"
    assert row["stopped"] == []
    assert row["resumed"]
    control.pause(redis_conn, "growth")
    out = finex(
        fleet_env, "workers", "restart", "--worker", "growth", "--drain-timeout", "1", "--json"
    )
    [row] = json.loads(out.stdout)
    assert row["was_paused"] is True
    assert row["resumed"] is False
    assert control.is_paused(redis_conn, "growth")


def test_a_new_shell_finds_the_dev_servers(redis_url, database_url, tmp_path) -> None:
    devstate.write(tmp_path, {"REDIS_URL": redis_url, "DATABASE_URL": database_url})
    env = {k: v for k, v in os.environ.items() if k not in devstate.VARIABLES}
    env.update({"FINEX_DEV_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)})
    out = subprocess.run(
        [sys.executable, "-m", "finex_workers.cli", "workers", "status", "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "using make dev's servers" in out.stderr
    assert [row["queue"] for row in json.loads(out.stdout)] == ["matrix", "growth", "probability"]


def test_the_dev_summary_shows_a_paused_queue(redis_conn) -> None:
    control.pause(redis_conn, "growth")
    line = devserver._summary(redis_conn)
    assert "growth PAUSED:" in line
    assert "matrix:" in line
    assert "matrix PAUSED" not in line


def test_the_exporter_error_page_says_what_is_wrong_in_one_line() -> None:
    url = dead_redis()
    with running_exporter(url) as metrics_url:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(metrics_url, timeout=10)
        assert err.value.code == 500
        body = err.value.read().decode()
    assert body.count("\n") == 1
    assert body.startswith("finex exporter: cannot reach Redis at REDIS_URL=redis://:***@127.0.0.1")
    assert SECRET not in body


def test_make_help_lists_targets_with_digits() -> None:
    out = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
    )
    targets = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    assert {"k8s-tools", "test-e2e", "dev", "help"} <= targets


def test_enqueue_one_job_ids_are_stable(fleet_env, redis_conn) -> None:
    first = json.loads(finex(fleet_env, "enqueue", "probability", "7", "--json").stdout)
    again = json.loads(finex(fleet_env, "enqueue", "probability", "7", "--json").stdout)
    assert first["jobs"][0]["job_id"] == again["jobs"][0]["job_id"]
    assert again["created"] == 0
    assert again["deduplicated"] == 1
    settings = Settings.from_env(fleet_env)
    assert enqueue.probability(redis_conn, settings, 7).created is False


def test_the_exporter_probes_tell_a_dead_redis_from_a_dead_process(redis_url) -> None:
    def get(url: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                return reply.status, reply.read().decode().strip()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode().strip()

    with running_exporter(dead_redis()) as metrics_url:
        base = metrics_url.rsplit("/", 1)[0]
        assert get(f"{base}/livez") == (200, "ok")
        status, body = get(f"{base}/readyz")
        assert status == 503
        assert body.startswith("not ready: cannot reach Redis at REDIS_URL=redis://:***@"), body
        assert SECRET not in body
    with running_exporter(redis_url) as metrics_url:
        base = metrics_url.rsplit("/", 1)[0]
        assert get(f"{base}/readyz") == (200, "ready: Redis answers")
