"""Resource quantities: the operator passes them to the Deployment as the pool holds them.

A Pod takes a quantity as a string or a number, so the operator never rewrites one: `cpu: 0.5`
reaches the container as 0.5, and the apiserver reads it as 500m (tests/e2e/test_crd_validation.py
checks that end to end). Also: the CRD, its admission policy and the binding name each other.
"""

from __future__ import annotations

import json
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


def test_the_templates_quantities_reach_the_deployment_unchanged() -> None:
    """spec.podTemplate's quantities (emptyDir.sizeLimit, a resourceFieldRef's divisor) are
    passed through as the pool holds them: a number stays a number, for the Pod to read."""
    template = {
        "env": [
            {
                "name": "CPU",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": 1}},
            }
        ],
        "volumes": [
            {"name": "a", "emptyDir": {"sizeLimit": 1073741824}},
            {"name": "b", "emptyDir": {"sizeLimit": 1e9}},
            {"name": "c", "emptyDir": {"sizeLimit": "1Gi"}},
            {
                "name": "info",
                "projected": {
                    "sources": [
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "cpu",
                                        "resourceFieldRef": {
                                            "containerName": "worker",
                                            "resource": "requests.cpu",
                                            "divisor": 0.001,
                                        },
                                    }
                                ]
                            }
                        }
                    ]
                },
            },
        ],
    }
    spec = parse_spec({**SPEC, "podTemplate": template})
    dep = builders.deployment(
        pool="p", uid="u", spec=spec, queue="growth", replicas=1, grace_margin=30
    )
    pod = dep["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for volume in template["volumes"]:
        assert volumes[volume["name"]] == volume
    assert type(volumes["a"]["emptyDir"]["sizeLimit"]) is int
    assert type(volumes["b"]["emptyDir"]["sizeLimit"]) is float
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["CPU"] == template["env"][0]


def _quantity_paths(schema: dict[str, object], path: str) -> list[str]:
    """The paths under schema whose description says the field is a Pod's quantity."""
    found = []
    if "Written as a Pod takes it" in str(schema.get("description", "")):
        found.append(path)
    node: dict[str, object] = schema
    if "items" in schema:
        node = schema["items"]  # type: ignore[assignment]
        path += "[]"
    for name, sub in dict(node.get("properties", {})).items():  # type: ignore[call-overload]
        found += _quantity_paths(sub, f"{path}.{name}")
    return found


def test_every_quantity_of_the_template_is_untyped_and_judged_by_the_policy() -> None:
    """hack/pod-template-schema.py renders each Quantity of the Pod's types untyped, as
    spec.resources' (a Pod takes 0.5 and "512Mi"); the policy must judge every one of them."""
    crd = yaml.safe_load((REPO / "crds" / "finexworkerpools.yaml").read_text())
    policy = (REPO / "crds" / "finexworkerpools-quantities-policy.yaml").read_text()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    template = schema["properties"]["spec"]["properties"]["podTemplate"]
    paths = _quantity_paths(template, "spec.podTemplate")
    assert sorted(paths) == [
        "spec.podTemplate.env[].valueFrom.resourceFieldRef.divisor",
        "spec.podTemplate.volumes[].emptyDir.sizeLimit",
        "spec.podTemplate.volumes[].projected.sources[].downwardAPI.items[].resourceFieldRef.divisor",
    ]
    assert "x-kubernetes-int-or-string" not in json.dumps(template)  # that refuses 0.5
    for path in paths:
        node = template
        for part in path.split(".")[2:]:
            node = node["properties"][part.removesuffix("[]")]
            if part.endswith("[]"):
                node = node["items"]
        assert "type" not in node
        assert node["x-kubernetes-preserve-unknown-fields"] is True
        assert "finexworkerpools-quantities.finex.io" in " ".join(node["description"].split())
        # The policy's CEL builds the same path, with indexes.
        tail = path.split("[]")[-1]
        assert f"]{tail}'" in policy, tail
