"""The autoscaler's decisions and the scale-in's choice of Pods, as tables (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from finex_operator import builders
from finex_operator.planner import (
    DELETION_COST_ANNOTATION,
    DeploymentView,
    Observed,
    PodLoad,
    PodView,
    ScaleDecision,
    decide,
    deletion_cost,
    demand,
    plan,
    pod_loads,
    pod_of_worker,
)
from finex_operator.reasons import EventReason, ScaleReason
from finex_operator.spec import Autoscale, parse_spec
from finex_workers.control import QueueState

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
AUTO = Autoscale(min_replicas=0, jobs_per_replica=5, scale_down_stabilization_seconds=60)


def qs(waiting: int = 0, active: int = 0, delayed: int = 0) -> QueueState:
    return QueueState("growth", False, waiting, active, delayed, 0, 0, 0)


def test_demand_counts_waiting_active_and_delayed() -> None:
    assert demand(qs(3, 2, 4)) == 9


# (case, auto, ceiling, state, current, since (s ago), want replicas, reason, since kept)
CASES = [
    (
        "new idle queue starts with no Pod",
        AUTO,
        8,
        qs(),
        None,
        None,
        0,
        ScaleReason.STEADY,
        False,
    ),
    ("new queue with work", AUTO, 8, qs(11), None, None, 3, ScaleReason.SCALED_UP, False),
    ("up at once when demand crosses", AUTO, 8, qs(6), 1, None, 2, ScaleReason.SCALED_UP, False),
    (
        "active jobs count, not only the list",
        AUTO,
        8,
        qs(0, 10),
        1,
        None,
        2,
        ScaleReason.SCALED_UP,
        False,
    ),
    ("scheduled retries count", AUTO, 8, qs(0, 0, 11), 2, None, 3, ScaleReason.SCALED_UP, False),
    ("capped at maxReplicas", AUTO, 4, qs(100), 1, None, 4, ScaleReason.SCALED_UP, False),
    ("back from zero on new work", AUTO, 8, qs(1), 0, None, 1, ScaleReason.SCALED_UP, False),
    ("demand met", AUTO, 8, qs(7, 3), 2, None, 2, ScaleReason.STEADY, False),
    ("demand met clears the window", AUTO, 8, qs(7, 3), 2, 30, 2, ScaleReason.STEADY, False),
    ("down starts the window", AUTO, 8, qs(1), 3, None, 3, ScaleReason.STABILIZING, True),
    ("down inside the window waits", AUTO, 8, qs(1), 3, 59, 3, ScaleReason.STABILIZING, True),
    ("down after the window", AUTO, 8, qs(1), 3, 60, 1, ScaleReason.SCALED_DOWN, False),
    ("to zero when idle after the window", AUTO, 8, qs(), 3, 61, 0, ScaleReason.SCALED_DOWN, False),
    (
        "never below minReplicas",
        Autoscale(min_replicas=2, jobs_per_replica=5, scale_down_stabilization_seconds=0),
        8,
        qs(),
        4,
        None,
        2,
        ScaleReason.SCALED_DOWN,
        False,
    ),
    (
        "window 0 scales down at once",
        Autoscale(jobs_per_replica=1, scale_down_stabilization_seconds=0),
        8,
        qs(0, 1),
        4,
        None,
        1,
        ScaleReason.SCALED_DOWN,
        False,
    ),
    (
        "a ceiling lowered below current scales down",
        AUTO,
        1,
        qs(0, 20),
        4,
        60,
        1,
        ScaleReason.SCALED_DOWN,
        False,
    ),
    ("Redis unreadable holds", AUTO, 8, None, 3, None, 3, ScaleReason.NO_DEMAND_READING, False),
]


@pytest.mark.parametrize(
    ("auto", "ceiling", "state", "current", "ago", "want", "reason", "keeps"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(auto, ceiling, state, current, ago, want, reason, keeps) -> None:
    since = NOW - timedelta(seconds=ago) if ago is not None else None
    got = decide(auto, ceiling, state, current, since=since, now=NOW)
    assert (got.replicas, got.reason) == (want, reason), got.message
    assert (got.scale_down_since is not None) == keeps
    if keeps and since is not None:
        assert got.scale_down_since == since


def test_pod_of_worker() -> None:
    assert pod_of_worker("growth.p-growth-7d9f-abc12.41", "growth") == "p-growth-7d9f-abc12"
    assert pod_of_worker("growth.host.with.dots.41", "growth") == "host.with.dots"
    assert pod_of_worker("matrix.p-matrix-1.41", "growth") is None
    assert pod_of_worker("growth.41", "growth") is None


COSTS = [
    ("idle", PodLoad(0, 0), 0),
    ("unknown pod is idle", None, 0),
    ("one young job", PodLoad(1, 2), 6),
    ("one older job costs more", PodLoad(1, 30), 7),
    ("one job of 10 minutes", PodLoad(1, 700), 9),
    ("two young jobs outweigh one old", PodLoad(2, 1), 11),
]


@pytest.mark.parametrize(("load", "cost"), [c[1:] for c in COSTS], ids=[c[0] for c in COSTS])
def test_deletion_cost(load, cost) -> None:
    assert deletion_cost(load) == cost


def test_pod_loads_groups_live_workers_by_pod() -> None:
    loads = pod_loads(
        [
            ("growth.pod-a.1", "j1", 3.0),
            ("growth.pod-a.2", "", None),
            ("growth.pod-b.1", "", None),
            ("growth.pod-c.1", "j2", 40.0),
            ("growth.pod-c.2", "j3", 2.0),
        ],
        "growth",
    )
    assert loads == {"pod-a": PodLoad(1, 3.0), "pod-b": PodLoad(0, 0.0), "pod-c": PodLoad(2, 40.0)}


SPEC = {
    "image": "finex:1",
    "queues": [
        {
            "name": "growth",
            "concurrency": 1,
            "maxReplicas": 4,
            "autoscale": {"jobsPerReplica": 1, "scaleDownStabilizationSeconds": 0},
        }
    ],
    "redis": {"urlSecretRef": {"name": "s", "key": "r"}},
    "database": {"urlSecretRef": {"name": "s", "key": "d"}, "connectionBudget": 10},
}


def observed(spec=None, *, state=None, replicas=4, pods=(), load=None, status=None) -> Observed:
    parsed = parse_spec(spec or SPEC)
    return Observed(
        name="p",
        uid="u",
        generation=1,
        spec=parsed,
        now=NOW,
        status={"observedGeneration": 1, **(status or {})},
        deployments={"growth": DeploymentView(replicas, replicas, "old")},
        pods={"growth": len(pods)},
        pod_views={"growth": list(pods)},
        pod_load=load,
        queues={"growth": state or qs()},
    )


def test_scale_in_marks_idle_pods_below_the_busy_one_and_posts_scaled_down() -> None:
    pods = [PodView(n, None) for n in ("a", "b", "c", "d")]
    load = {"a": PodLoad(0), "b": PodLoad(1, 20.0), "c": PodLoad(0), "d": PodLoad(0)}
    status = {"queues": [{"name": "growth", "desiredReplicas": 4}]}
    todo = plan(observed(state=qs(0, 1), pods=pods, load=load, status=status))
    assert todo.pod_costs == {"a": 0, "b": 7, "c": 0, "d": 0}
    (dep,) = todo.apply
    assert dep["spec"]["replicas"] == 1
    reasons = [e.reason for e in todo.events]
    assert EventReason.SCALED_DOWN in reasons
    entry = todo.status["queues"][0]
    assert (entry["desiredReplicas"], entry["scaleReason"], entry["demand"]) == (1, "ScaledDown", 1)
    assert todo.status["totals"]["desiredReplicas"] == 1
    assert todo.status["scaling"] == "growth 4->1 ScaledDown"


def test_costs_already_in_place_are_not_patched_and_terminating_pods_are_left() -> None:
    pods = [PodView("a", "0"), PodView("b", "6"), PodView("c", None, terminating=True)]
    load = {"b": PodLoad(1, 1.0)}
    todo = plan(observed(state=qs(0, 1), pods=pods, load=load))
    assert todo.pod_costs == {}


def test_without_redis_costs_stay_as_they_are() -> None:
    assert plan(observed(pods=[PodView("a", "9")], load=None)).pod_costs == {}


def test_external_mode_never_sends_replicas_but_keeps_costs() -> None:
    spec = {**SPEC, "queues": [{**SPEC["queues"][0], "autoscale": {"mode": "External"}}]}
    todo = plan(observed(spec, pods=[PodView("a", None)], load={"a": PodLoad(1, 1.0)}))
    (dep,) = todo.apply  # the spec hash "old" differs, so it is patched ...
    assert "replicas" not in dep["spec"]  # ... without replicas: the HPA's value stays
    assert todo.pod_costs == {"a": 6}
    assert [e.reason for e in todo.events] == [EventReason.DEPLOYMENT_APPLIED]
    entry = todo.status["queues"][0]
    assert (entry["desiredReplicas"], entry["scaleReason"]) == (4, "ExternalAutoscaler")


def test_external_body_without_replicas_hashes_the_same_whatever_the_hpa_set() -> None:
    spec = parse_spec(
        {**SPEC, "queues": [{**SPEC["queues"][0], "autoscale": {"mode": "External"}}]}
    )
    body = builders.deployment(
        pool="p", uid="u", spec=spec, queue="growth", replicas=None, grace_margin=30
    )
    h = body["metadata"]["annotations"][builders.HASH_ANNOTATION]
    obs = observed({**SPEC, "queues": [{**SPEC["queues"][0], "autoscale": {"mode": "External"}}]})
    obs = Observed(**{**obs.__dict__, "deployments": {"growth": DeploymentView(7, 7, h)}})
    assert plan(obs).apply == []


def test_steady_autoscaled_queue_posts_nothing() -> None:
    spec = parse_spec(SPEC)
    body = builders.deployment(
        pool="p", uid="u", spec=spec, queue="growth", replicas=2, grace_margin=30
    )
    h = body["metadata"]["annotations"][builders.HASH_ANNOTATION]
    obs = observed(state=qs(1, 1), status={"queues": [{"name": "growth", "desiredReplicas": 2}]})
    obs = Observed(**{**obs.__dict__, "deployments": {"growth": DeploymentView(2, 2, h)}})
    todo = plan(obs)
    assert (todo.apply, todo.events) == ([], [])
    assert todo.status["queues"][0]["scaleReason"] == "DemandMet"


def test_scale_decision_changed() -> None:
    assert ScaleDecision(1, ScaleReason.SCALED_UP, "").changed
    assert not ScaleDecision(1, ScaleReason.STABILIZING, "").changed
    assert DELETION_COST_ANNOTATION == "controller.kubernetes.io/pod-deletion-cost"


def test_the_operator_reads_the_pod_from_the_names_workers_give_themselves(monkeypatch) -> None:
    from finex_workers.runtime.worker import worker_name

    monkeypatch.setenv("FINEX_WORKER_HOST", "fleet-growth-5d8c9-x2k4q")
    name = worker_name("growth", 7)
    assert name != worker_name("growth", 7)  # a restarted container's pid 7 gets a new name
    assert pod_of_worker(name, "growth") == "fleet-growth-5d8c9-x2k4q"
