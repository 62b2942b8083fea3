"""A worker pod's probes (/livez, /readyz on its metrics port), against real workers and Redis."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

from finex_workers import control
from finex_workers.core.settings import Settings
from finex_workers.dev.localservices import free_port
from finex_workers.observability.health import readiness
from tests.support.waiting import wait_for


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode().strip()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode().strip()
    except OSError as err:
        return 0, str(err)


def test_ready_once_a_worker_of_this_pod_is_live_and_alive_while_paused(
    redis_conn, settings, start_fleet
) -> None:
    port = free_port()
    fleet = start_fleet(
        ["growth"], args=("--metrics-port", str(port)), GROWTH_WORKER_CONCURRENCY="2"
    )
    # Both workers live: /readyz answers 200 from the first one on, and on a loaded machine the
    # second may start a moment later (the probe then says 1/2).
    fleet.wait_ready(redis_conn, per_queue=2)
    status, body = wait_for(
        "the probe to answer 200 with both workers live",
        lambda: (s := get(port, "/readyz"))[0] == 200 and "growth 2/2" in s[1] and s,
    )
    assert body.startswith("ready: live workers growth 2/2"), body
    assert get(port, "/livez")[0] == 200
    assert control.pause(redis_conn, "growth")
    assert get(port, "/readyz")[0] == 200  # paused workers are live: still ready
    assert control.resume(redis_conn, "growth")
    status, _ = get(port, "/metrics")
    assert status == 200  # the job metrics app still answers everything else


def test_readiness_counts_only_this_hosts_workers(redis_conn, settings, start_fleet) -> None:
    start_fleet(["growth"], GROWTH_WORKER_CONCURRENCY="1").wait_ready(redis_conn)
    ready, line = readiness(settings, ["growth"], socket.gethostname())
    assert ready, line
    ready, line = readiness(settings, ["growth"], "some-other-pod")
    assert not ready
    assert line == "not ready: no live worker of growth on some-other-pod (growth 0/1)"


def test_unready_with_one_line_while_redis_is_unreachable() -> None:
    dead = Settings(redis_url=f"redis://:secret@127.0.0.1:{free_port()}/0")
    ready, line = readiness(dead, ["growth"], socket.gethostname())
    assert not ready
    assert line.startswith("not ready: "), line
    assert "REDIS_URL" in line, line
    assert "secret" not in line
    assert "\n" not in line


def test_alive_but_unready_while_the_supervisor_waits_for_redis(start_fleet) -> None:
    port = free_port()
    start_fleet(
        ["growth"],
        args=("--metrics-port", str(port)),
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        GROWTH_WORKER_CONCURRENCY="1",
    )
    wait_for("/livez to answer", lambda: get(port, "/livez")[0] == 200)
    status, body = get(port, "/readyz")
    assert status == 503
    assert body.startswith("not ready: "), body
    assert "REDIS_URL" in body, body
