"""spec.podTemplate, the rollout strategy and the timeouts: pure tests of spec.py and builders.py.

What the apiserver refuses is in tests/e2e/test_crd_validation.py; that a pool with a template
gets Deployments carrying it, on the apiserver, is in tests/e2e/test_operator.py.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from finex_operator import builders
from finex_operator.spec import DRAIN_MARGIN_SECONDS, parse_spec
from tests.support.pod_template import TEMPLATE

CRD = Path(__file__).resolve().parents[2] / "crds" / "finexworkerpools.yaml"
SPEC: dict[str, Any] = {
    "image": "registry.example/team/finex-workers:1",
    "queues": [
        {"name": "matrix", "replicas": 2, "concurrency": 5},
        {"name": "growth", "replicas": 1, "concurrency": 10},
    ],
    "redis": {"urlSecretRef": {"name": "s", "key": "redis-url"}},
    "database": {"urlSecretRef": {"name": "s", "key": "database-url"}, "connectionBudget": 40},
}


def build(spec: dict[str, Any], queue: str = "growth", margin: int = 30) -> dict[str, Any]:
    return builders.deployment(
        pool="p", uid="u", spec=parse_spec(spec), queue=queue, replicas=1, grace_margin=margin
    )


def with_template(template: dict[str, Any]) -> dict[str, Any]:
    return {**SPEC, "podTemplate": template}


def crd_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema["properties"]


# -- the defaults agree -----------------------------------------------------------------------


def test_the_default_drain_timeout_outlasts_the_default_job_timeout() -> None:
    schema = crd_spec_schema()
    job = schema["jobTimeoutSeconds"]["default"]
    # What the apiserver stores for a pool that sets neither, and what the operator makes of it.
    stored = {**SPEC, "jobTimeoutSeconds": job}
    if "default" in schema["drainTimeoutSeconds"]:
        stored["drainTimeoutSeconds"] = schema["drainTimeoutSeconds"]["default"]
    assert parse_spec(stored).drain_timeout_seconds >= job


@pytest.mark.parametrize("job_timeout", [1, 60, 600, 3600, 86400])
def test_an_unset_drain_timeout_follows_the_job_timeout(job_timeout: int) -> None:
    spec = parse_spec({**SPEC, "jobTimeoutSeconds": job_timeout})
    assert spec.drain_timeout_seconds == job_timeout + DRAIN_MARGIN_SECONDS
    # An explicit value is the user's, even a short one (with onDrainTimeout: Proceed, say).
    assert parse_spec({**SPEC, "drainTimeoutSeconds": 5}).drain_timeout_seconds == 5


@pytest.mark.parametrize("job_timeout", [60, 600, 3600])
def test_the_default_stop_deadline_outlasts_a_proceeding_drain(job_timeout: int) -> None:
    """With onDrainTimeout Proceed, Stopping waits for Pods that finish a job within their grace
    (job timeout + the operator's default grace margin): a default shorter than that aborts
    every such restart at Stopping."""
    schema = crd_spec_schema()
    stored = {**SPEC, "jobTimeoutSeconds": job_timeout, "onDrainTimeout": "Proceed"}
    if "default" in schema["stopTimeoutSeconds"]:
        stored["stopTimeoutSeconds"] = schema["stopTimeoutSeconds"]["default"]
    grace = build(stored)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert parse_spec(stored).stop_timeout_seconds > grace
    # An explicit value is the user's.
    assert parse_spec({**SPEC, "stopTimeoutSeconds": 5}).stop_timeout_seconds == 5


@pytest.mark.parametrize("job_timeout", [1, 600, 86400])
@pytest.mark.parametrize("margin", [0, 30, 3600])
def test_the_grace_period_covers_the_job_timeout(job_timeout: int, margin: int) -> None:
    pod = build({**SPEC, "jobTimeoutSeconds": job_timeout}, margin=margin)["spec"]["template"]
    assert pod["spec"]["terminationGracePeriodSeconds"] >= job_timeout + margin


def test_a_rollout_never_runs_old_and_new_pods_together() -> None:
    """A surge Pod (or a replacement beside a terminating one, which still holds its PostgreSQL
    connections while it finishes its job) would exceed replicas x concurrency: Recreate waits
    until the old Pods are gone."""
    assert build(SPEC)["spec"]["strategy"] == {"type": "Recreate"}


# -- the template reaches the Deployment ------------------------------------------------------


def test_every_template_field_reaches_the_deployment() -> None:
    body = build(with_template(TEMPLATE))
    template = body["spec"]["template"]
    pod = template["spec"]
    (container,) = pod["containers"]
    assert template["metadata"]["labels"]["team"] == "risk"
    assert template["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    assert template["metadata"]["annotations"] == {"vault.hashicorp.com/agent-inject": "true"}
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert pod["serviceAccountName"] == "finex-worker"
    assert pod["automountServiceAccountToken"] is True
    assert pod["priorityClassName"] == "batch-high"
    assert pod["nodeSelector"] == {"node.kubernetes.io/pool": "workers"}
    assert pod["tolerations"] == TEMPLATE["tolerations"]
    assert pod["affinity"] == TEMPLATE["affinity"]
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "ca"]
    assert pod["volumes"][1] == {"name": "ca", "secret": {"secretName": "finex-ca"}}
    env = [e["name"] for e in container["env"]]
    assert env[:2] == ["REDIS_URL", "DATABASE_URL"]
    assert env[-1] == "SSL_CERT_FILE"  # after the operator's, so $(VAR) can refer to them
    assert container["envFrom"] == [{"secretRef": {"name": "finex-extra"}}]
    assert container["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "ca", "mountPath": "/etc/finex/ca", "readOnly": True},
    ]
    # The template is not shared with the spec: a later edit of the body cannot change the pool.
    pod["tolerations"].append({"operator": "Exists"})
    assert len(parse_spec(with_template(TEMPLATE)).pod_template.tolerations) == 1


def test_every_template_field_of_the_crd_is_parsed() -> None:
    """A field added to the CRD's podTemplate but not to spec.py would be silently dropped."""
    fields = set(crd_spec_schema()["podTemplate"]["properties"])
    assert fields == set(TEMPLATE)
    plain = build(SPEC)
    for name in sorted(fields):
        one = build(
            with_template(
                {name: TEMPLATE[name]}
                | ({"volumes": TEMPLATE["volumes"]} if name == "volumeMounts" else {})
            )
        )
        assert one["spec"]["template"] != plain["spec"]["template"], name


def test_without_a_template_the_pod_is_what_it_was() -> None:
    pod = build(SPEC)["spec"]["template"]
    assert "annotations" not in pod["metadata"]
    for absent in ("imagePullSecrets", "serviceAccountName", "priorityClassName", "nodeSelector",
                   "tolerations", "affinity", "topologySpreadConstraints"):  # fmt: skip
        assert absent not in pod["spec"], absent
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert "envFrom" not in pod["spec"]["containers"][0]


def test_the_operators_labels_win_and_the_selector_is_unchanged() -> None:
    template = {"metadata": {"labels": {"finex.io/queue": "matrix", "team": "risk"}}}
    body = build(with_template(template), queue="growth")
    assert body["spec"]["selector"]["matchLabels"]["finex.io/queue"] == "growth"
    assert body["spec"]["template"]["metadata"]["labels"]["finex.io/queue"] == "growth"
    assert body["metadata"]["labels"].get("team") is None  # Pod labels stay on the Pods


def test_a_spread_constraint_without_a_selector_spreads_the_queues_own_pods() -> None:
    spread = {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
    }
    own = {"labelSelector": {"matchLabels": {"team": "risk"}}}
    body = build(with_template({"topologySpreadConstraints": [spread, {**spread, **own}]}))
    first, second = body["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert first["labelSelector"] == {
        "matchLabels": {"finex.io/pool": "p", "finex.io/queue": "growth"}
    }
    assert second["labelSelector"] == {"matchLabels": {"team": "risk"}}


@pytest.mark.parametrize("field", sorted(TEMPLATE))
def test_each_template_field_is_part_of_the_hash(field: str) -> None:
    """The planner patches only when the hash differs: a change the hash misses never lands."""
    base = build(with_template(TEMPLATE))
    changed = copy.deepcopy(TEMPLATE)
    edits: dict[str, Any] = {
        "metadata": {"labels": {"team": "ops"}},
        "imagePullSecrets": [{"name": "other"}],
        "serviceAccountName": "other",
        "automountServiceAccountToken": False,
        "priorityClassName": "other",
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"operator": "Exists"}],
        "affinity": {},
        "topologySpreadConstraints": [],
        "env": [{"name": "OTHER", "value": "1"}],
        "envFrom": [{"configMapRef": {"name": "other"}}],
        "volumes": [*TEMPLATE["volumes"], {"name": "more", "emptyDir": {}}],
        "volumeMounts": [],
    }
    changed[field] = edits[field]
    other = build(with_template(changed))
    key = builders.HASH_ANNOTATION
    assert other["metadata"]["annotations"][key] != base["metadata"]["annotations"][key]


def test_every_variable_the_operator_sets_is_refused_in_the_template_env() -> None:
    """The CEL rule on podTemplate.env names the operator's own variables: a pool that set one
    would be overridden silently (or override the operator). A new variable in
    builders.worker_env must join the rule, and this test fails until it does."""
    import re

    env_items = crd_spec_schema()["podTemplate"]["properties"]["env"]["items"]
    (rule,) = [
        v["rule"] for v in env_items["x-kubernetes-validations"] if "self.name in" in v["rule"]
    ]
    refused = set(re.findall(r"'([A-Z_]+)'", rule))
    retry = {**SPEC, "retry": {"maxRetries": 3, "intervals": [5, 10]}}
    ours = {
        e["name"] for q in ("matrix", "growth", "probability")
        for e in builders.worker_env(parse_spec({**retry, "queues": [
            {"name": q, "replicas": 1, "concurrency": 5}]}), q)
    }  # fmt: skip
    assert ours <= refused, f"not refused in podTemplate.env: {sorted(ours - refused)}"
