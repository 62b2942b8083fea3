"""Resource quantities: the operator passes them to the Deployment as the pool holds them.

A Pod takes a quantity as a string or a number, so the operator never rewrites one: `cpu: 0.5`
reaches the container as 0.5, and the apiserver reads it as 500m (tests/e2e/test_crd_validation.py
checks that end to end). Also: the CRD, its admission policy and the binding name each other.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from finex_operator import builders
from finex_operator.spec import parse_spec

REPO = Path(__file__).resolve().parents[2]
SPEC = {
    "image": "finex-workers:0.2.0",
    "queues": [{"name": "growth", "replicas": 1, "concurrency": 2}],
    "redis": {"urlSecretRef": {"name": "r", "key": "url"}},
    "database": {"urlSecretRef": {"name": "d", "key": "url"}, "connectionBudget": 10},
}


def test_numbers_and_strings_reach_the_container_unchanged() -> None:
    resources = {"requests": {"cpu": 0.5, "memory": 1e9}, "limits": {"cpu": 2, "memory": "1.5Gi"}}
    spec = parse_spec({**SPEC, "resources": resources})
    dep = builders.deployment(
        pool="p", uid="u", spec=spec, queue="growth", replicas=1, grace_margin=30
    )
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == resources
    assert type(container["resources"]["requests"]["cpu"]) is float


def test_the_crd_the_policy_and_its_binding_name_each_other() -> None:
    crd = yaml.safe_load((REPO / "crds" / "finexworkerpools.yaml").read_text())
    policy = yaml.safe_load((REPO / "crds" / "finexworkerpools-quantities-policy.yaml").read_text())
    binding = yaml.safe_load(
        (REPO / "crds" / "finexworkerpools-quantities-binding.yaml").read_text()
    )
    name = policy["metadata"]["name"]
    assert binding["spec"]["policyName"] == name
    assert binding["spec"]["validationActions"] == ["Deny"]
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["apiGroups"] == [crd["spec"]["group"]]
    assert rule["resources"] == [crd["spec"]["names"]["plural"]]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    resources = schema["properties"]["spec"]["properties"]["resources"]
    assert name in " ".join(resources["description"].split())
    for kind in ("requests", "limits"):
        for quantity in ("cpu", "memory"):
            field = resources["properties"][kind]["properties"][quantity]
            # Untyped, so a string and a YAML number both pass the schema, as in a Pod.
            assert "type" not in field
            assert field["x-kubernetes-preserve-unknown-fields"] is True
