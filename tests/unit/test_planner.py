"""Table-driven tests of the pure planner: restart phases, declarative pause, DLQ policy, status."""

from __future__ import annotations

import ast
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from finex_operator import builders
from finex_operator.planner import (
    HISTORY_LIMIT,
    DeploymentView,
    DlqEntry,
    Observed,
    Phase,
    PhaseRecord,
    PodView,
    RestartResult,
    RestartStatus,
    desired_replicas,
    parse_target,
    plan,
)
from finex_operator.spec import parse_spec
from finex_workers.cli import build_parser
from finex_workers.control import Holder, QueueState
from finex_workers.core.settings import Settings

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
QUEUES = ("matrix", "growth", "probability")
SPEC: dict[str, Any] = {
    "image": "finex/workers:1",
    "queues": [
        {"name": "matrix", "replicas": 2, "concurrency": 5},
        {"name": "growth", "replicas": 1, "concurrency": 10},
        {"name": "probability", "replicas": 1, "concurrency": 10},
    ],
    "redis": {"urlSecretRef": {"name": "s", "key": "redis-url"}},
    "database": {"urlSecretRef": {"name": "s", "key": "database-url"}, "connectionBudget": 40},
    "drainTimeoutSeconds": 60,
    "dlq": {"autoRetry": True, "maxRetries": 2, "backoffSeconds": 10, "maxBackoffSeconds": 100},
}


#: The holders of a pause (control.Holder): the operator's restart, spec.paused, the CLI.
R, S, CLI = Holder.OPERATOR_RESTART, Holder.OPERATOR_SPEC, Holder.CLI


def state(q: str, *, active: int = 0, holds: tuple[str, ...] = (), failed: int = 0) -> QueueState:
    return QueueState(q, bool(holds), 0, active, 0, failed, 0, 1, holds=holds)


def each(holder: str, queues: tuple[str, ...] | list[str] = QUEUES) -> list[tuple[str, str]]:
    """(queue, holder) for each queue: what Plan.pause and Plan.resume hold."""
    return [(q, holder) for q in queues]


def observed(
    *,
    spec: dict[str, Any] | None = None,
    restart: RestartStatus | None = None,
    annotations: dict[str, str] | None = None,
    active: int = 0,
    paused: bool = False,
    holds: tuple[str, ...] | None = None,
    deployments: dict[str, DeploymentView] | None = None,
    pods: dict[str, int] | None = None,
    pod_views: dict[str, list[PodView]] | None = None,
    status: dict[str, Any] | None = None,
    dlq: dict[str, list[DlqEntry]] | None = None,
    redis_ok: bool = True,
) -> Observed:
    """paused=True: every queue paused by the operator's restart (holds names who else)."""
    held = holds if holds is not None else ((R,) if paused else ())
    parsed = parse_spec(spec or SPEC)
    st: dict[str, Any] = {"observedGeneration": 1, **(status or {})}
    if restart is not None:
        st["restart"] = restart.to_status()
    if deployments is None:
        deployments = {}
        for q in QUEUES:
            want = desired_replicas(parsed, q, restart)
            body = builders.deployment(
                pool="p", uid="u", spec=parsed, queue=q, replicas=want, grace_margin=30
            )
            h = body["metadata"]["annotations"][builders.HASH_ANNOTATION]
            deployments[q] = DeploymentView(want, want, h)
    return Observed(
        name="p",
        uid="u",
        generation=1,
        spec=parsed,
        now=NOW,
        status=st,
        annotations=annotations or {},
        deployments=deployments,
        pods=pods if pods is not None else {q: d.replicas for q, d in deployments.items()},
        pod_views=pod_views or {},
        queues={q: state(q, active=active, holds=held) for q in QUEUES} if redis_ok else None,
        redis_error="" if redis_ok else "ConnectionError: refused",
        dlq=dlq or {},
    )


def running(phase: Phase, *, since: float = 1, **extra: Any) -> RestartStatus:
    """A restart of every queue (value r1) that began 30 s ago and entered phase `since` ago."""
    restart = RestartStatus(
        phase=phase,
        requested_value="r1",
        queues=QUEUES,
        started_at=NOW - timedelta(seconds=30),
        phase_started_at=NOW - timedelta(seconds=since),
    )
    return replace(restart, **extra)


@pytest.mark.parametrize(
    ("value", "queues", "error"),
    [
        ("2026-01-01T00:00:00Z", list(QUEUES), False),
        ("matrix@1", ["matrix"], False),
        ("growth,matrix@x", ["matrix", "growth"], False),
        ("nosuch@1", [], True),
        ("@1", [], True),
    ],
)
def test_parse_target(value: str, queues: list[str], error: bool) -> None:
    got, err = parse_target(value, QUEUES)
    assert got == queues
    assert bool(err) == error


# (name, observed, expected phase after, pause, resume, expected event reason or None)
RESTART_TABLE = [
    (
        "new value starts Pausing",
        observed(annotations={"finex.io/restart": "r1"}),
        "Pausing",
        [],
        [],
        "RestartStarted",
    ),
    (
        "same value does nothing",
        observed(annotations={"finex.io/restart": "r1"}, restart=running(Phase.DONE)),
        "Done",
        [],
        [],
        None,
    ),
    (
        "baseline on first sight",
        observed(annotations={"finex.io/restart": "r1"}, status={"observedGeneration": 0}),
        "Done",
        [],
        [],
        None,
    ),
    (
        "unknown queue is refused",
        observed(annotations={"finex.io/restart": "bogus@1"}),
        "Done",
        [],
        [],
        "RestartRefused",
    ),
    (
        "Pausing pauses, then Draining",
        observed(restart=running(Phase.PAUSING), annotations={"finex.io/restart": "r1"}),
        "Draining",
        list(QUEUES),
        [],
        "RestartDraining",
    ),
    (
        "Draining waits for active jobs",
        observed(restart=running(Phase.DRAINING), active=1, paused=True),
        "Draining",
        [],
        [],
        None,
    ),
    (
        "Draining settles before believing no active job",
        observed(restart=running(Phase.DRAINING, since=0), paused=True),
        "Draining",
        [],
        [],
        None,
    ),
    (
        "Draining done when no active job",
        observed(restart=running(Phase.DRAINING), paused=True),
        "Stopping",
        [],
        [],
        "RestartStopping",
    ),
    (
        "Draining timeout aborts by default",
        observed(restart=running(Phase.DRAINING, since=61), active=1, paused=True),
        "Resuming",
        [],
        [],
        "DrainTimedOut",
    ),
    (
        "Draining timeout proceeds when asked",
        observed(
            spec={**SPEC, "onDrainTimeout": "Proceed"},
            restart=running(Phase.DRAINING, since=61),
            active=1,
            paused=True,
        ),
        "Stopping",
        [],
        [],
        "DrainTimedOut",
    ),
    (
        "Stopping waits for Pods",
        observed(restart=running(Phase.STOPPING), pods={"matrix": 1}, paused=True),
        "Stopping",
        [],
        [],
        None,
    ),
    (
        "Stopping done when Pods gone",
        observed(restart=running(Phase.STOPPING), pods={}, paused=True),
        "Starting",
        [],
        [],
        "RestartStarting",
    ),
    (
        "Starting waits for Ready",
        observed(
            restart=running(Phase.STARTING),
            deployments={q: DeploymentView(1, 0, "") for q in QUEUES},
            paused=True,
        ),
        "Starting",
        [],
        [],
        None,
    ),
    (
        "Starting waits for the controller to see the scale-up (a stale readyReplicas)",
        observed(
            restart=running(Phase.STARTING),
            deployments={
                q: DeploymentView(n, n, "", current=False)
                for q, n in zip(QUEUES, (2, 1, 1), strict=True)
            },
            paused=True,
        ),
        "Starting",
        [],
        [],
        None,
    ),
    (
        "Starting done when Ready",
        observed(restart=running(Phase.STARTING), paused=True),
        "Resuming",
        [],
        [],
        "RestartResuming",
    ),
    (
        "Resuming resumes, Done",
        observed(restart=running(Phase.RESUMING), paused=True),
        "Done",
        [],
        list(QUEUES),
        "RestartSucceeded",
    ),
    (
        "Resuming with spec.paused keeps paused",
        observed(
            spec={**SPEC, "paused": True},
            restart=running(Phase.RESUMING),
            holds=(S, R),
            status={"pausedBySpec": True},
        ),
        "Done",
        [],
        list(QUEUES),  # the restart lifts its own hold; spec.paused's keeps the queues paused
        "RestartSucceeded",
    ),
    (
        "aborted restart still resumes",
        observed(restart=running(Phase.RESUMING, result=RestartResult.ABORTED), paused=True),
        "Done",
        [],
        list(QUEUES),
        "RestartAborted",
    ),
    (
        "Redis down holds Draining",
        observed(restart=running(Phase.DRAINING), redis_ok=False),
        "Draining",
        [],
        [],
        None,
    ),
]


@pytest.mark.parametrize(
    ("obs", "phase", "pause", "resume", "reason"),
    [row[1:] for row in RESTART_TABLE],
    ids=[row[0] for row in RESTART_TABLE],
)
def test_restart_phases(
    obs: Observed, phase: str, pause: list[str], resume: list[str], reason: str | None
) -> None:
    out = plan(obs)
    assert out.status["restart"]["phase"] == phase
    assert out.pause == each(R, pause)
    assert out.resume == each(R, resume)
    reasons = [e.reason for e in out.events]
    if reason:
        assert reason in reasons
    else:
        assert not [r for r in reasons if r.startswith(("Restart", "Drain"))]


def test_second_annotation_during_restart_is_queued_not_started() -> None:
    out = plan(
        observed(
            restart=running(Phase.DRAINING),
            annotations={"finex.io/restart": "r2"},
            active=1,
            paused=True,
        )
    )
    assert out.status["restart"]["requestedValue"] == "r1"
    assert out.status["restart"]["pending"] == "r2"
    assert [e.reason for e in out.events] == ["RestartQueued"]


def test_stopping_scales_only_target_queues_to_zero() -> None:
    restart = running(Phase.STOPPING, queues=("matrix",))
    obs = observed(restart=restart, deployments={q: DeploymentView(1, 1, "") for q in QUEUES})
    replicas = {b["metadata"]["name"]: b["spec"]["replicas"] for b in plan(obs).apply}
    assert replicas == {"p-matrix": 0, "p-growth": 1, "p-probability": 1}


def test_steady_state_changes_nothing() -> None:
    obs = observed()
    first = plan(obs)
    assert first.apply == []
    assert first.pause == first.resume == []
    again = plan(Observed(**{**obs.__dict__, "status": first.status}))
    assert again.status == first.status
    assert again.events == []


@pytest.mark.parametrize(
    ("spec_paused", "paused_by_spec", "holds", "pause", "resume"),
    [
        (True, False, (), list(QUEUES), []),
        (True, True, (S,), [], []),
        (False, True, (S,), [], list(QUEUES)),
        (False, False, (CLI,), [], []),  # paused by someone else (the CLI): left alone
        # spec.paused holds the queue under its own name beside the CLI's pause, so turning
        # it off later lifts only its own hold, and the CLI's pause stays.
        (True, False, (CLI,), list(QUEUES), []),
        (False, True, (CLI, S), [], list(QUEUES)),
        # ... and a restart's hold is not spec.paused's to lift.
        (False, True, (R,), [], []),
    ],
    ids=["pause", "held", "lift", "cli-only", "beside-cli", "lift-own-only", "restart-hold"],
)
def test_declarative_pause(spec_paused, paused_by_spec, holds, pause, resume) -> None:
    out = plan(
        observed(
            spec={**SPEC, "paused": spec_paused},
            status={"pausedBySpec": paused_by_spec},
            holds=holds,
        )
    )
    assert out.pause == each(S, pause)
    assert out.resume == each(S, resume)
    assert out.status["pausedBySpec"] is spec_paused


def entry(job: str, retries: int, age: float) -> DlqEntry:
    return DlqEntry(job, retries, NOW - timedelta(seconds=age))


@pytest.mark.parametrize(
    ("entries", "retried", "parked"),
    [
        ([entry("a", 0, 11)], ["a"], 0),  # backoff 10s passed
        ([entry("a", 0, 5)], None, 0),  # still backing off
        ([entry("a", 1, 15)], None, 0),  # second retry waits 20s
        ([entry("a", 1, 25)], ["a"], 0),
        ([entry("a", 2, 9999)], None, 1),  # maxRetries reached: parked
        ([DlqEntry("a", 0, None)], ["a"], 0),  # no failure time: due
        ([DlqEntry("a", 0, None, quarantined=True), entry("b", 0, 11)], ["b"], 0),  # issue 19
    ],
)
def test_dlq_auto_retry_with_backoff_and_parking(entries, retried, parked) -> None:
    out = plan(observed(dlq={"growth": entries}))
    assert out.retry_dlq.get("growth") == retried
    growth = next(q for q in out.status["queues"] if q["name"] == "growth")
    assert growth["parked"] == parked


def test_retry_dlq_annotation_forces_a_retry_once() -> None:
    obs = observed(annotations={"finex.io/retry-dlq": "now"}, dlq={"growth": [entry("a", 5, 1)]})
    out = plan(obs)
    assert out.retry_dlq == {q: None for q in QUEUES}
    assert out.status["dlq"]["retryRequest"] == "now"
    again = plan(Observed(**{**obs.__dict__, "status": out.status}))
    assert again.retry_dlq == {}


def test_ready_condition_and_transition_time_kept_when_status_unchanged() -> None:
    obs = observed(deployments={q: DeploymentView(1, 0, "") for q in QUEUES})
    first = plan(obs).status
    ready = next(c for c in first["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert ready["observedGeneration"] == 1
    later = Observed(**{**obs.__dict__, "status": first, "now": NOW + timedelta(seconds=5)})
    again = next(c for c in plan(later).status["conditions"] if c["type"] == "Ready")
    assert again["lastTransitionTime"] == ready["lastTransitionTime"]


def test_degraded_when_redis_is_unreachable() -> None:
    out = plan(observed(redis_ok=False))
    degraded = next(c for c in out.status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RedisUnavailable")


def _schema_keys(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """Paths in value that the CRD's status schema would prune."""
    missing = []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key, sub in value.items():
            if key not in props:
                missing.append(f"{path}.{key}")
            else:
                missing += _schema_keys(props[key], sub, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            missing += _schema_keys(schema.get("items", {}), item, f"{path}[]")
    return missing


def test_every_status_field_the_planner_writes_is_in_the_crd_schema() -> None:
    crd = yaml.safe_load((Path(__file__).parents[2] / "crds" / "finexworkerpools.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    statuses = [
        plan(observed(restart=running(Phase.RESUMING), paused=True)).status,
        plan(
            observed(annotations={"finex.io/retry-dlq": "x"}, dlq={"growth": [entry("a", 0, 99)]})
        ).status,
        plan(observed(annotations={"finex.io/restart": "r9"}, restart=running(Phase.DONE))).status,
    ]
    for status in statuses:
        assert _schema_keys(schema, status, "status") == []


def test_deployment_is_restricted_and_takes_credentials_from_secrets() -> None:
    spec = parse_spec(SPEC)
    body = builders.deployment(
        pool="p", uid="u", spec=spec, queue="growth", replicas=1, grace_margin=30
    )
    pod = body["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:5] == ["finex", "workers", "start", "--worker", "growth"]
    assert "--metrics-port=9102" in container["command"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9102, "protocol": "TCP"}]
    # The worker's own CLI accepts that command line.
    args = build_parser().parse_args(container["command"][1:])
    assert (args.worker, args.metrics_port) == ("growth", 9102)
    env = {e["name"]: e for e in container["env"]}
    assert env["GROWTH_WORKER_CONCURRENCY"]["value"] == "10"
    # The worker accepts this environment: its own budget check passes for the queue it runs.
    plain = {name: e["value"] for name, e in env.items() if "value" in e}
    Settings.from_env(plain).check_budget(["growth"])
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "s", "key": "redis-url"}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "s", "key": "database-url"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["terminationGracePeriodSeconds"] == 630
    sc = container["securityContext"]
    assert sc["runAsNonRoot"]
    assert sc["readOnlyRootFilesystem"]
    assert not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert body["metadata"]["ownerReferences"][0]["controller"] is True


# -- status.restart as a typed value ------------------------------------------------------------

AT = NOW - timedelta(seconds=30)
ROUND_TRIPS = [
    RestartStatus(),
    RestartStatus(phase=Phase.DONE, requested_value="r0", message="baseline"),
    running(Phase.DRAINING, pending="r2"),
    running(Phase.STOPPING, queues=("matrix",)),
    replace(running(Phase.RESUMING, result=RestartResult.ABORTED), finished_at=NOW).enter(
        Phase.DONE, NOW, "restart aborted in 30s"
    ),
    RestartStatus(phase=Phase.DONE, result=RestartResult.REFUSED, requested_value="x@1"),
]


@pytest.mark.parametrize("restart", ROUND_TRIPS)
def test_restart_status_round_trips(restart: RestartStatus) -> None:
    assert RestartStatus.from_status(restart.to_status()) == restart


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ({}, RestartStatus()),
        (  # the baseline an earlier operator wrote: no times, no history, no pending
            {
                "phase": "Done",
                "result": "",
                "requestedValue": "r1",
                "queues": [],
                "message": "annotation present at creation; change its value to restart",
            },
            RestartStatus(
                phase=Phase.DONE,
                requested_value="r1",
                message="annotation present at creation; change its value to restart",
            ),
        ),
        (  # unreadable parts take their defaults instead of stopping the reconcile
            {
                "phase": "Draining",
                "queues": ["growth"],
                "phaseStartedAt": "yesterday",
                "history": [{"phase": "Pausing", "at": "2026-01-01T11:59:30Z"}, {"phase": "?"}],
            },
            RestartStatus(
                phase=Phase.DRAINING,
                queues=("growth",),
                history=(PhaseRecord(Phase.PAUSING, AT),),
            ),
        ),
        (
            {"result": "Succeeded", "finishedAt": "2026-01-01T12:00:00+00:00"},
            RestartStatus(result=RestartResult.SUCCEEDED, finished_at=NOW),
        ),
    ],
    ids=["empty", "old baseline", "unreadable parts", "offset time"],
)
def test_restart_status_parses_old_and_partial_statuses(
    stored: dict[str, Any], expected: RestartStatus
) -> None:
    assert RestartStatus.from_status(stored) == expected


def test_restart_status_renders_the_crd_shape() -> None:
    rendered = running(Phase.DRAINING).enter(Phase.STOPPING, NOW, "drained").to_status()
    assert rendered == {
        "phase": "Stopping",
        "result": "",
        "requestedValue": "r1",
        "queues": list(QUEUES),
        "startedAt": "2026-01-01T11:59:30Z",
        "phaseStartedAt": "2026-01-01T12:00:00Z",
        "finishedAt": None,
        "message": "drained",
        "pending": "",
        "abortValue": "",
        "abortedIn": None,
        "history": [{"phase": "Stopping", "at": "2026-01-01T12:00:00Z"}],
    }


def test_enter_returns_a_copy_and_keeps_the_last_history_entries() -> None:
    restart = running(Phase.PAUSING)
    moved = restart
    for i in range(HISTORY_LIMIT + 3):
        moved = moved.enter(Phase.DRAINING, NOW + timedelta(seconds=i), f"tick {i}")
    assert restart.history == ()  # unchanged
    assert len(moved.history) == HISTORY_LIMIT
    assert moved.history[-1].at == NOW + timedelta(seconds=HISTORY_LIMIT + 2)


def test_a_new_restart_clears_the_last_finish_time_through_the_merge_patch() -> None:
    done = replace(running(Phase.DONE, result=RestartResult.SUCCEEDED), finished_at=AT)
    out = plan(observed(restart=done, annotations={"finex.io/restart": "r2"}))
    restart = out.status["restart"]
    assert (restart["phase"], restart["requestedValue"]) == ("Pausing", "r2")
    assert "finishedAt" in restart
    assert restart["finishedAt"] is None  # null in a JSON merge patch removes the stored value


def test_the_planner_package_does_no_io() -> None:
    """The planner stays pure: no kopf, Kubernetes or Redis client in any of its modules."""
    package = Path(__file__).parents[2] / "operator" / "finex_operator" / "planner"
    banned = {"kopf", "kubernetes", "redis", "rq", "psycopg"}
    found = []
    for module in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            found += [f"{module.name}: {n}" for n in names if n.split(".")[0] in banned]
    assert found == []


# -- annotations: why a restart covers its queues, and unknown finex.io/ keys ------------------

RESTART_WHY = [
    ("1767268800", list(QUEUES), "('1767268800'; no '@': all queues)"),
    (
        "matrix",
        list(QUEUES),
        "('matrix'; no '@': all queues (for matrix only, write matrix@<nonce>))",
    ),
    (
        "growth,matrix",
        list(QUEUES),
        "no '@': all queues (for growth,matrix only, write growth,matrix@<nonce>)",
    ),
    ("matrix@n1", ["matrix"], "('matrix@n1'; the queues before '@')"),
    ("probability,growth@n2", ["growth", "probability"], "the queues before '@'"),
]


@pytest.mark.parametrize(("value", "queues", "why"), RESTART_WHY, ids=[r[0] for r in RESTART_WHY])
def test_restart_event_says_which_queues_and_why(value: str, queues: list[str], why: str) -> None:
    out = plan(observed(annotations={"finex.io/restart": value}, restart=running(Phase.DONE)))
    (event,) = [e for e in out.events if e.reason == "RestartStarted"]
    assert event.type == "Normal"
    assert event.message.startswith(f"restart of {', '.join(queues)} requested")
    assert why in event.message
    assert out.status["restart"]["queues"] == queues


def test_retry_dlq_event_says_why_too() -> None:
    out = plan(observed(annotations={"finex.io/retry-dlq": "growth"}))
    (event,) = [e for e in out.events if e.reason == "DLQRetryRequested"]
    assert "no '@': all queues (for growth only, write growth@<nonce>)" in event.message


UNKNOWN_TABLE: list[tuple[str, dict[str, str], list[str], list[str], list[str]]] = [
    # (id, annotations, already reported, warned now, status.unknownAnnotations)
    (
        "typo warns once",
        {"finex.io/restarts": "1"},
        [],
        ["finex.io/restarts"],
        ["finex.io/restarts"],
    ),
    (
        "already reported: quiet",
        {"finex.io/restarts": "1"},
        ["finex.io/restarts"],
        [],
        ["finex.io/restarts"],
    ),
    ("removed: forgotten", {}, ["finex.io/restarts"], [], []),
    (
        "a second one warns for itself only",
        {"finex.io/restarts": "1", "finex.io/pause": "true"},
        ["finex.io/restarts"],
        ["finex.io/pause"],
        ["finex.io/pause", "finex.io/restarts"],
    ),
    (
        "user annotations are known",
        {"finex.io/restart": "1", "finex.io/retry-dlq": "2"},
        [],
        [],
        [],
    ),
    (
        "kopf's bookkeeping is known",
        {
            "finex.io/kopf-managed": "yes",
            "finex.io/last-handled-configuration": "{}",
            "finex.io/touch-dummy": "x",
            "finex.io/changed": '{"started": "..."}',
            "finex.io/tick": "{}",
        },
        [],
        [],
        [],
    ),
    ("other prefixes are not ours", {"example.com/restarts": "1", "restart": "1"}, [], [], []),
]


@pytest.mark.parametrize(
    ("annotations", "reported", "warned", "kept"),
    [row[1:] for row in UNKNOWN_TABLE],
    ids=[row[0] for row in UNKNOWN_TABLE],
)
def test_unknown_finex_annotations_get_one_warning(
    annotations: dict[str, str], reported: list[str], warned: list[str], kept: list[str]
) -> None:
    out = plan(observed(annotations=annotations, status={"unknownAnnotations": reported}))
    warnings = [e for e in out.events if e.reason == "UnknownAnnotation"]
    assert [e.type for e in warnings] == ["Warning"] * len(warned)
    assert [e.message.split()[1] for e in warnings] == warned
    assert out.status["unknownAnnotations"] == kept


def test_unknown_annotation_warning_names_the_closest_known_one() -> None:
    out = plan(observed(annotations={"finex.io/retry_dlq": "1"}))
    (event,) = out.events
    assert event.message == (
        "annotation finex.io/retry_dlq is not one the operator knows and does nothing; did you"
        " mean finex.io/retry-dlq? the pool's annotations are finex.io/restart,"
        " finex.io/abort-restart, finex.io/retry-dlq"
    )
    far = plan(observed(annotations={"finex.io/owner": "team-a"})).events[0].message
    assert "did you mean" not in far


def test_kopf_handler_ids_are_the_handlers_in_handlers_py() -> None:
    from finex_operator.planner.annotations import KOPF_HANDLER_IDS, LEGACY_HANDLER_IDS

    # Indexes and raw-event handlers keep no progress annotation; the others do.
    tree = ast.parse(
        (Path(__file__).parents[2] / "operator/finex_operator/handlers.py").read_text()
    )
    resource_handlers = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(
            isinstance(d, ast.Call)
            and "RESOURCE" in ast.unparse(d)
            and not ast.unparse(d).startswith(("kopf.index", "kopf.on.event"))
            for d in node.decorator_list
        )
    }
    assert resource_handlers | LEGACY_HANDLER_IDS == KOPF_HANDLER_IDS


def test_worker_deployments_carry_the_recommended_labels_beside_an_unchanged_selector() -> None:
    body = builders.deployment(
        pool="p", uid="u", spec=parse_spec(SPEC), queue="growth", replicas=1, grace_margin=30
    )
    # The selector is immutable: exactly what it was before the labels were added.
    assert body["spec"]["selector"] == {
        "matchLabels": {"finex.io/pool": "p", "finex.io/queue": "growth"}
    }
    want = {
        "finex.io/pool": "p",
        "finex.io/queue": "growth",
        "app.kubernetes.io/name": "finex-worker",
        "app.kubernetes.io/instance": "p",
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": "finex-workers",
        "app.kubernetes.io/managed-by": "finex-operator",
    }
    assert body["metadata"]["labels"] == want
    assert body["spec"]["template"]["metadata"]["labels"] == want


# -- restart safety: deadlines, abort, Pods past their grace, autoscalers, own pauses ---------

DEADLINES: dict[str, Any] = {**SPEC, "stopTimeoutSeconds": 120, "startTimeoutSeconds": 180}
NOT_READY = {q: DeploymentView(1, 0, "") for q in QUEUES}

# (id, observed, phase after, result, the Warning it posts or None)
DEADLINE_TABLE = [
    (
        "Stopping within its deadline waits",
        observed(spec=DEADLINES, restart=running(Phase.STOPPING, since=119), pods={"matrix": 1}),
        "Stopping",
        "",
        None,
    ),
    (
        "Stopping past its deadline aborts (a Pod held Terminating, KEDA scaling it back)",
        observed(
            spec=DEADLINES,
            restart=running(Phase.STOPPING, since=120),
            pods={"matrix": 1},
            paused=True,
        ),
        "Resuming",
        "Aborted",
        "RestartTimedOut",
    ),
    (
        "Starting within its deadline waits",
        observed(spec=DEADLINES, restart=running(Phase.STARTING, since=179), deployments=NOT_READY),
        "Starting",
        "",
        None,
    ),
    (
        "Starting past its deadline aborts (a bad image, no capacity)",
        observed(
            spec=DEADLINES,
            restart=running(Phase.STARTING, since=180),
            deployments=NOT_READY,
            paused=True,
        ),
        "Resuming",
        "Aborted",
        "RestartTimedOut",
    ),
    (
        "Pausing without Redis past the drain deadline aborts",
        observed(spec=DEADLINES, restart=running(Phase.PAUSING, since=60), redis_ok=False),
        "Resuming",
        "Aborted",
        "RestartTimedOut",
    ),
    (
        "Pausing without Redis within the drain deadline waits",
        observed(spec=DEADLINES, restart=running(Phase.PAUSING, since=59), redis_ok=False),
        "Pausing",
        "",
        None,
    ),
]


@pytest.mark.parametrize(
    ("obs", "phase", "result", "warning"),
    [row[1:] for row in DEADLINE_TABLE],
    ids=[row[0] for row in DEADLINE_TABLE],
)
def test_every_waiting_phase_has_a_deadline(
    obs: Observed, phase: str, result: str, warning: str | None
) -> None:
    out = plan(obs)
    restart = out.status["restart"]
    assert (restart["phase"], restart["result"]) == (phase, result)
    warnings = [e.reason for e in out.events if e.type == "Warning"]
    assert warnings == ([warning] if warning else [])
    if warning:
        assert restart["abortedIn"] == obs.status["restart"]["phase"]
        assert "deadline" in restart["message"]


def test_an_aborted_restart_resumes_its_own_pauses_and_reports_degraded() -> None:
    aborted = plan(
        observed(
            spec=DEADLINES,
            restart=running(Phase.STARTING, since=180),
            deployments=NOT_READY,
            holds=(R, CLI),
        )
    )
    then = RestartStatus.from_status(aborted.status["restart"])
    done = plan(observed(spec=DEADLINES, restart=then, deployments=NOT_READY, holds=(R, CLI)))
    assert done.status["restart"]["phase"] == "Done"
    assert done.status["restart"]["result"] == "Aborted"
    assert done.resume == each(R)  # the CLI's pause is not the restart's to lift
    assert [e.reason for e in done.events if e.type == "Warning"] == ["RestartAborted"]
    degraded = next(c for c in done.status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RestartAborted")
    # The next restart that succeeds clears it.
    ok = replace(running(Phase.RESUMING, requested_value="r2"), result=RestartResult.NONE)
    later = plan(observed(spec=DEADLINES, restart=ok, paused=True, status=done.status))
    degraded = next(c for c in later.status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("False", "AsExpected")


def test_abort_from_stopping_scales_the_queues_back_up() -> None:
    spec = {
        **DEADLINES,
        "queues": [
            {"name": "matrix", "replicas": 2, "concurrency": 5},
            {
                "name": "growth",
                "replicas": 1,
                "concurrency": 10,
                "maxReplicas": 2,
                "autoscale": {"mode": "External", "minReplicas": 0},
            },
            {"name": "probability", "replicas": 1, "concurrency": 10},
        ],
    }
    stopped = {q: DeploymentView(0, 0, "") for q in QUEUES}
    aborting = plan(
        observed(
            spec=spec,
            restart=running(Phase.STOPPING, since=120),
            deployments=stopped,
            pods={"matrix": 1},
        )
    )
    then = RestartStatus.from_status(aborting.status["restart"])
    assert (then.phase, then.aborted_in) == (Phase.RESUMING, Phase.STOPPING)
    # The reconcile that aborts writes the replicas back (the Deployments follow the restart
    # as it is after the step).
    replicas = {b["metadata"]["name"]: b["spec"].get("replicas") for b in aborting.apply}
    # External (KEDA) is brought back to max(1, minReplicas), as Starting would have.
    assert replicas == {"p-matrix": 2, "p-growth": 1, "p-probability": 1}


ABORT = "finex.io/abort-restart"


@pytest.mark.parametrize(
    ("restart", "value", "phase", "result", "reason"),
    [
        (running(Phase.DRAINING), "now", "Resuming", "Aborted", "RestartAbortRequested"),
        (running(Phase.STOPPING), "now", "Resuming", "Aborted", "RestartAbortRequested"),
        # A value already handled (the one present when the restart began) does nothing.
        (running(Phase.DRAINING, abort_value="old"), "old", "Draining", "", None),
        # Resuming is the abort path already: nothing to abort.
        (running(Phase.RESUMING), "now", "Done", "Succeeded", None),
    ],
    ids=["draining", "stopping", "handled", "resuming"],
)
def test_abort_annotation_aborts_a_running_restart_once(
    restart: RestartStatus, value: str, phase: str, result: str, reason: str | None
) -> None:
    out = plan(
        observed(
            restart=restart,
            annotations={RESTART_ANNOTATION_KEY: "r1", ABORT: value},
            active=1,
            pods={},
            paused=True,
        )
    )
    got = out.status["restart"]
    assert (got["phase"], got["result"]) == (phase, result)
    assert got["abortValue"] == value
    reasons = [e.reason for e in out.events]
    assert "UnknownAnnotation" not in reasons
    if reason:
        assert reason in reasons


RESTART_ANNOTATION_KEY = "finex.io/restart"


def test_abort_annotation_also_drops_the_restart_queued_behind() -> None:
    restart = running(Phase.DRAINING, pending="r2")
    annotations = {RESTART_ANNOTATION_KEY: "r2", ABORT: "a1"}
    out = plan(observed(restart=restart, annotations=annotations, active=1, paused=True))
    then = RestartStatus.from_status(out.status["restart"])
    assert then.pending == ""
    done = plan(observed(restart=then, annotations=annotations, paused=True))
    again = RestartStatus.from_status(done.status["restart"])
    assert again.phase is Phase.DONE
    nothing = plan(observed(restart=again, annotations=annotations))
    assert nothing.status["restart"]["phase"] == "Done"  # r2 was handled by the abort


def test_an_abort_value_set_before_a_restart_is_its_baseline() -> None:
    annotations = {RESTART_ANNOTATION_KEY: "r2", ABORT: "a1"}
    out = plan(observed(restart=running(Phase.DONE), annotations=annotations))
    assert out.status["restart"]["phase"] == "Pausing"
    assert out.status["restart"]["abortValue"] == "a1"


def _pod(name: str, *, gone_in: float | None = None) -> PodView:
    """A Pod; gone_in: terminating, its grace ending that many seconds from NOW (< 0: past)."""
    if gone_in is None:
        return PodView(name)
    return PodView(name, terminating=True, deletion_deadline=NOW + timedelta(seconds=gone_in))


@pytest.mark.parametrize(
    ("views", "phase"),
    [
        ({"matrix": [_pod("a", gone_in=-31)]}, "Starting"),  # a lost node, or a finalizer
        ({"matrix": [_pod("a", gone_in=-5)]}, "Stopping"),  # the kubelet may still report
        ({"matrix": [_pod("a", gone_in=20)]}, "Stopping"),  # within its grace
        ({"matrix": [_pod("a")]}, "Stopping"),  # not even deleted yet
    ],
    ids=["past-grace", "just-past", "within-grace", "running"],
)
def test_stopping_does_not_wait_for_pods_past_their_grace(
    views: dict[str, list[PodView]], phase: str
) -> None:
    stopped = {q: DeploymentView(0, 0, "") for q in QUEUES}
    obs = observed(
        restart=running(Phase.STOPPING),
        deployments=stopped,
        pods={q: len(v) for q, v in views.items()},
        pod_views=views,
        paused=True,
    )
    out = plan(obs)
    assert out.status["restart"]["phase"] == phase
    if phase == "Starting":
        assert any("past their grace" in e.message for e in out.events)


def test_stopping_scales_back_to_zero_a_deployment_an_autoscaler_raised() -> None:
    restart = running(Phase.STOPPING, queues=("matrix",))
    parsed = parse_spec(SPEC)
    body = builders.deployment(
        pool="p", uid="u", spec=parsed, queue="matrix", replicas=0, grace_margin=30
    )
    same = body["metadata"]["annotations"][builders.HASH_ANNOTATION]
    base = observed(restart=restart, paused=True)
    deployments = {**base.deployments, "matrix": DeploymentView(3, 3, same)}  # KEDA set 3
    out = plan(replace(base, deployments=deployments, pods={"matrix": 3}))
    replicas = {b["metadata"]["name"]: b["spec"]["replicas"] for b in out.apply}
    assert replicas == {"p-matrix": 0}


def _without_probability(**extra: Any) -> Observed:
    """The pool after probability left spec.queues: its Deployment and paused queue remain."""
    obs = observed(**extra)
    states = dict(obs.queues or {})
    states["probability"] = state("probability", holds=(R, S))
    spec = parse_spec({**SPEC, "queues": SPEC["queues"][:2]})
    return replace(obs, spec=spec, queues=states)


def test_a_removed_queue_is_scaled_to_zero_then_deleted_and_its_pause_lifted() -> None:
    running_dep = _without_probability()
    assert "probability" in running_dep.deployments  # left behind by the spec change
    out = plan(running_dep)
    assert out.scale == {"p-probability": 0}
    assert out.delete == []
    assert out.resume == [("probability", R), ("probability", S)]
    assert "QueueRemoved" in [e.reason for e in out.events]
    assert next(e for e in out.events if e.reason == "QueueRemoved").type == "Normal"

    draining = replace(
        running_dep,
        deployments={**running_dep.deployments, "probability": DeploymentView(0, 0, "")},
        pods={**running_dep.pods, "probability": 1},
    )
    out = plan(draining)
    assert (out.scale, out.delete) == ({}, [])  # its Pods finish their jobs first

    lifted = {**(draining.queues or {}), "probability": state("probability")}
    held = replace(draining, pods={**draining.pods, "probability": 0})
    assert plan(held).delete == []  # not before Redis shows the pauses lifted
    gone = replace(held, queues=lifted)
    out = plan(gone)
    assert (out.scale, out.delete) == ({}, ["p-probability"])
    assert "DeploymentDeleted" in [e.reason for e in out.events]
    # It never enters the pool's status or its budget.
    assert [q["name"] for q in out.status["queues"]] == ["matrix", "growth"]


def test_a_queue_removed_mid_restart_is_dropped_from_it_and_resumed() -> None:
    obs = _without_probability(restart=running(Phase.DRAINING), paused=True)
    out = plan(obs)
    assert ("probability", R) in out.resume
    assert ("probability", R) not in out.pause


def test_the_restart_resumes_only_the_pauses_it_set() -> None:
    # Pausing: a queue the CLI paused already still gets the restart's own hold.
    out = plan(observed(restart=running(Phase.PAUSING), holds=(CLI,)))
    assert out.pause == each(R)
    # Resuming: the restart lifts its hold; the CLI's pause (taken before or during) stays.
    out = plan(observed(restart=running(Phase.RESUMING), holds=(CLI, R)))
    assert out.resume == each(R)
    # A queue whose hold the restart no longer has (someone resumed it by hand): nothing.
    out = plan(observed(restart=running(Phase.RESUMING), holds=(CLI,)))
    assert out.resume == []


def test_a_pause_an_earlier_operator_wrote_is_lifted_by_the_operator() -> None:
    """Before holders, the operator wrote "finex-operator" for both of its pauses."""
    legacy = Holder.LEGACY_OPERATOR
    out = plan(observed(status={"pausedBySpec": True}, holds=(legacy,)))
    assert out.resume == each(legacy)  # spec.paused is false and no restart runs
    out = plan(observed(restart=running(Phase.STOPPING), holds=(legacy,), pods={}))
    assert out.resume == []  # a running restart may hold it: its Resuming lifts it
    out = plan(observed(restart=running(Phase.RESUMING), holds=(legacy,)))
    assert out.resume == each(legacy)
