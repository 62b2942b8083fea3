"""Crash accounting (issue 19): the crash's reason as the supervisor records it, and the pool's
maxCrashes reaching the workers' FINEX_MAX_CRASHES."""

from __future__ import annotations

import pytest

from finex_operator import builders
from finex_operator.spec import parse_spec
from finex_workers.control import Crash
from finex_workers.core.settings import Settings

SPEC = {
    "image": "finex:1",
    "queues": [{"name": "growth", "concurrency": 1}],
    "redis": {"urlSecretRef": {"name": "s", "key": "r"}},
    "database": {"urlSecretRef": {"name": "s", "key": "d"}, "connectionBudget": 10},
}


@pytest.mark.parametrize(
    ("code", "overdue", "expected"),
    [
        (-9, False, "signal: killed by SIGKILL (9); worker growth.pod-a.b.41 on pod-a.b"),
        (-11, False, "signal: killed by SIGSEGV (11); worker growth.pod-a.b.41 on pod-a.b"),
        (3, False, "exit: exit code 3; worker growth.pod-a.b.41 on pod-a.b"),
        (-9, True, "timeout: ran past its timeout + margin, SIGKILLed; worker growth.pod-a.b.41"),
    ],
)
def test_the_crash_names_its_cause_worker_and_host(code, overdue, expected) -> None:
    crash = Crash.of_exit("growth.pod-a.b.41-", code, overdue=overdue)
    assert str(crash).startswith(expected)
    assert crash.worker == "growth.pod-a.b.41-"


def test_a_sweep_tells_a_lost_worker_from_a_dead_process() -> None:
    assert Crash.judged("heartbeat expired 61s ago", "growth.h.1-x").kind == "lost"
    assert str(Crash.judged("heartbeat expired 61s ago", "growth.h.1-x")).endswith("growth.h.1-x")
    assert Crash.judged("worker w (pid 4 on this host) is not running", "w").kind == "died"


def test_max_crashes_defaults_to_three_and_reaches_the_workers() -> None:
    assert Settings.from_env({}).max_crashes == 3
    assert Settings.from_env({"FINEX_MAX_CRASHES": "0"}).max_crashes == 0
    for raw, want in ((SPEC, "3"), ({**SPEC, "maxCrashes": 5}, "5")):
        body = builders.deployment(
            pool="p", uid="u", spec=parse_spec(raw), queue="growth", replicas=1, grace_margin=30
        )
        env = {
            e["name"]: e.get("value")
            for e in body["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["FINEX_MAX_CRASHES"] == want


def _pod(state: dict, last: dict | None = None, container: str = "worker") -> dict:
    return {
        "metadata": {
            "name": "p-growth-7d9f-x2k",
            "uid": "u1",
            "labels": {"finex.io/pool": "p", "finex.io/queue": "growth"},
        },
        "status": {
            "containerStatuses": [
                {"name": container, "state": state, "lastState": last or {}, "restartCount": 1}
            ]
        },
    }


def _terminated(code: int, reason: str, at: str = "2026-12-07T17:00:00Z") -> dict:
    return {
        "terminated": {"exitCode": code, "reason": reason, "finishedAt": at, "containerID": "c"}
    }


@pytest.mark.parametrize(
    ("pod", "kinds"),
    [
        (_pod({"running": {}}), []),
        (_pod({"running": {}}, _terminated(137, "OOMKilled")), ["oom"]),
        (_pod({"running": {}}, _terminated(137, "Error")), ["signal"]),
        (_pod(_terminated(2, "Error")), ["exit"]),
        (_pod(_terminated(0, "Completed")), []),  # the supervisor's end after a stop
        (_pod({"running": {}}, _terminated(137, "OOMKilled"), container="sidecar"), []),
    ],
)
def test_the_kubelets_report_of_a_worker_containers_death(pod, kinds) -> None:
    from finex_operator.podcrash import crashes_of

    found = crashes_of(pod)
    assert [c.crash.kind for c in found] == kinds
    for c in found:
        assert (c.pool, c.queue) == ("p", "growth")
        assert c.crash.worker == "growth.p-growth-7d9f-x2k."
        assert "Pod p-growth-7d9f-x2k" in c.crash.detail
        assert c.crash.before == 1796662801.0  # finishedAt + 1 s
