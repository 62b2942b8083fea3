"""The FinexWorkerPool CRD on the real apiserver: what it refuses, accepts and explains.

Every refusal here is a spec the operator's Deployment (or its Pods) would otherwise be refused
for later, or a contradiction in the spec itself. Each case is a `kubectl apply --dry-run=server`
of one edit to a good pool; the message must carry the numbers or the value that is wrong.
The accepted cases are the edges of the same rules, and the Deployments the operator builds from
them are checked against the apiserver too, so the CRD is neither looser nor stricter than
Kubernetes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from finex_operator import builders
from finex_operator.spec import parse_spec
from tests.support import cluster as k8s
from tests.support.k8s_fixtures import Kubectl, wait_established
from tests.support.pod_template import TEMPLATE
from tests.support.waiting import wait_for

CRD = Path(__file__).resolve().parents[2] / "crds" / "finexworkerpools.yaml"
POLICY = CRD.parent / "finexworkerpools-quantities-policy.yaml"
BINDING = CRD.parent / "finexworkerpools-quantities-binding.yaml"
DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def crd(k8s_cluster: k8s.Cluster) -> None:
    # Applying it is the check of the CEL cost estimate: the apiserver refuses a CRD whose
    # rules or messageExpressions could exceed the budget.
    k8s_cluster.kubectl("apply", "-f", str(CRD))
    wait_established(k8s_cluster, CRD)
    # The quantity policy (the CRD keeps the quantities untyped): the apiserver compiles it and
    # reports type errors in its status; it acts once its binding reaches the admission plugin.
    k8s_cluster.kubectl("apply", "-f", str(POLICY), "-f", str(BINDING))
    wait_for("the quantity policy to refuse 512m", lambda: _policy_refuses(k8s_cluster), 60, 0.2)
    status = json.loads(k8s_cluster.kubectl("get", "-f", str(POLICY), "-o", "json").stdout).get(
        "status", {}
    )
    assert not status.get("typeChecking", {}).get("expressionWarnings"), status


def _policy_refuses(cluster: k8s.Cluster) -> bool:
    body = pool("policy-probe")
    body["spec"]["resources"] = {"limits": {"memory": "512m"}}
    result = cluster.kubectl(
        "create", "--dry-run=server", "--namespace=default", "-f", "-",
        input=json.dumps(body), check=False,
    )  # fmt: skip
    return result.returncode != 0 and "did you mean 512Mi?" in result.stderr


def pool(name: str = "pool") -> dict[str, Any]:
    return {
        "apiVersion": "finex.io/v1alpha1",
        "kind": "FinexWorkerPool",
        "metadata": {"name": name},
        "spec": {
            "image": "finex-workers:0.1.0",
            "queues": [
                {"name": "matrix", "replicas": 2, "concurrency": 5},
                {"name": "growth", "replicas": 1, "concurrency": 10},
                {"name": "probability", "replicas": 1, "concurrency": 10},
            ],
            "redis": {"urlSecretRef": {"name": "finex-urls", "key": "redis-url"}},
            "database": {
                "urlSecretRef": {"name": "finex-urls", "key": "database-url"},
                "connectionBudget": 30,
            },
        },
    }


def dry_run(kubectl: Kubectl, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-",
        input=json.dumps(body), check=False,
    )  # fmt: skip


Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    """An edit that sets one dotted path of the whole body (list indexes as numbers)."""

    def edit(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[last] = value

    return edit


REFUSED: list[tuple[str, Edit, str]] = [
    (
        "pool name too long for its labels",
        _set("metadata.name", "p" * 64),
        "metadata.name has 64 characters; a pool name is at most 63",
    ),
    (
        "budget message carries both numbers",
        _set("spec.database.connectionBudget", 29),
        "spec.database.connectionBudget: Invalid value: total PostgreSQL connections 30 exceed"
        " spec.database.connectionBudget 29",
    ),
    (
        "maxReplicas below replicas, with both numbers",
        _set("spec.queues.0.maxReplicas", 1),
        "spec.queues[0].maxReplicas: Invalid value: maxReplicas (1) must be at least replicas (2)",
    ),
    (
        "autoscale without its ceiling",
        _set("spec.queues.0.autoscale", {"minReplicas": 1}),
        "spec.queues[0].maxReplicas: Required value: an autoscaled queue needs maxReplicas",
    ),
    (
        "autoscale floor above its ceiling, with both numbers",
        lambda body: body["spec"]["queues"][0].update(maxReplicas=2, autoscale={"minReplicas": 3}),
        "spec.queues[0].autoscale.minReplicas: Invalid value: autoscale.minReplicas (3) exceeds"
        " maxReplicas (2)",
    ),
    (
        "redis Secret name with capitals and underscore",
        _set("spec.redis.urlSecretRef.name", "Finex_Redis"),
        'spec.redis.urlSecretRef.name: Invalid value: "Finex_Redis": must be a Secret name',
    ),
    (
        "database Secret name ending in a dot",
        _set("spec.database.urlSecretRef.name", "finex."),
        'spec.database.urlSecretRef.name: Invalid value: "finex.": must be a Secret name',
    ),
    (
        "Secret name too long",
        _set("spec.redis.urlSecretRef.name", "s" * 254),
        "spec.redis.urlSecretRef.name: Too long: may not be more than 253 bytes",
    ),
    (
        "Secret key with a slash",
        _set("spec.redis.urlSecretRef.key", "redis/url"),
        'spec.redis.urlSecretRef.key: Invalid value: "redis/url": must be a Secret key',
    ),
    (
        "Secret key '.'",
        _set("spec.database.urlSecretRef.key", "."),
        'spec.database.urlSecretRef.key: Invalid value: ".": must be a Secret key',
    ),
    (
        "Secret key starting with '..'",
        _set("spec.database.urlSecretRef.key", "..url"),
        'spec.database.urlSecretRef.key: Invalid value: "..url": must be a Secret key',
    ),
    (
        "cpu that is no quantity",
        _set("spec.resources.requests.cpu", "half"),
        'spec.resources.requests.cpu: "half" is not a non-negative Kubernetes quantity: a string'
        " such as 500m, 2, 512Mi or 1.5Gi, or a number such as 0.5 or 2",
    ),
    (
        "negative memory",
        _set("spec.resources.limits.memory", "-1Gi"),
        'spec.resources.limits.memory: "-1Gi" is not a non-negative Kubernetes quantity',
    ),
    (
        "negative cpu as a number",
        _set("spec.resources.limits.cpu", -0.5),
        'spec.resources.limits.cpu: "-0.5" is not a non-negative Kubernetes quantity',
    ),
    (
        "memory with a unit Kubernetes does not know",
        _set("spec.resources.requests.memory", "1GB"),
        'spec.resources.requests.memory: "1GB" is not a non-negative Kubernetes quantity',
    ),
    (
        "cpu given as an object",
        _set("spec.resources.requests.cpu", {"value": 1}),
        "spec.resources.requests.cpu: must be a non-negative Kubernetes quantity",
    ),
    (
        "memory given as a boolean",
        _set("spec.resources.limits.memory", True),
        "spec.resources.limits.memory: must be a non-negative Kubernetes quantity",
    ),
    (
        "fractional memory 512m, with what was meant",
        _set("spec.resources.limits.memory", "512m"),
        'spec.resources.limits.memory: "512m" is 0.512 bytes; memory is whole bytes (m is milli):'
        " did you mean 512Mi?",
    ),
    (
        "fractional memory as a number",
        _set("spec.resources.requests.memory", 1.5),
        'spec.resources.requests.memory: "1.5" is 1.5 bytes; memory is whole bytes: use a binary'
        " suffix, such as 512Mi or 1.5Gi",
    ),
    (
        "cpu request above its limit",
        _set("spec.resources", {"requests": {"cpu": 2}, "limits": {"cpu": "1500m"}}),
        "spec.resources.requests.cpu: requests.cpu (2) must not exceed limits.cpu (1500m)",
    ),
    (
        "cpu request above its limit, both numbers",
        _set("spec.resources", {"requests": {"cpu": 1.5}, "limits": {"cpu": 1}}),
        "spec.resources.requests.cpu: requests.cpu (1.5) must not exceed limits.cpu (1)",
    ),
    (
        "memory request above its limit",
        _set("spec.resources", {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}),
        "requests.memory (1Gi) must not exceed limits.memory (512Mi)",
    ),
    (
        "image with capitals in its path",
        _set("spec.image", "Finex/Workers:1"),
        'spec.image: Invalid value: "Finex/Workers:1": must be a container image reference',
    ),
    (
        "image with a space",
        _set("spec.image", "finex-workers :1"),
        "must be a container image reference",
    ),
    (
        "image with an empty tag",
        _set("spec.image", "finex-workers:"),
        "must be a container image reference",
    ),
    (
        "image with a short digest",
        _set("spec.image", "finex-workers@sha256:abc"),
        "must be a container image reference",
    ),
    (
        "DLQ backoff above its cap",
        _set("spec.dlq", {"backoffSeconds": 120, "maxBackoffSeconds": 60}),
        "spec.dlq.backoffSeconds: Invalid value: dlq.backoffSeconds (120) exceeds"
        " dlq.maxBackoffSeconds (60, which defaults to 3600)",
    ),
    (
        "DLQ backoff above the default cap",
        _set("spec.dlq", {"backoffSeconds": 7200}),
        "dlq.backoffSeconds (7200) exceeds dlq.maxBackoffSeconds (3600, which defaults to 3600)",
    ),
    # spec.podTemplate: what the Deployment or its Pods would be refused for, or would break.
    (
        "pull secret that is no Secret name",
        _set("spec.podTemplate.imagePullSecrets", [{"name": "Registry_Creds"}]),
        'spec.podTemplate.imagePullSecrets[0].name: Invalid value: "Registry_Creds": must be a'
        " DNS-1123 subdomain",
    ),
    (
        "Pod label that would take over the selector",
        _set("spec.podTemplate.metadata.labels", {"finex.io/queue": "matrix"}),
        "spec.podTemplate.metadata.labels: Forbidden: finex.io/ and app.kubernetes.io/ labels"
        " are set by the operator",
    ),
    (
        "Pod label key with a space",
        _set("spec.podTemplate.metadata.labels", {"cost center": "risk"}),
        "spec.podTemplate.metadata.labels: Invalid value: every key must be a qualified name",
    ),
    (
        "Pod label value too long",
        _set("spec.podTemplate.metadata.labels", {"team": "r" * 64}),
        "spec.podTemplate.metadata.labels.team: Too long: may not be more than 63 bytes",
    ),
    (
        "Pod label value with a slash",
        _set("spec.podTemplate.metadata.labels", {"team": "risk/ops"}),
        'spec.podTemplate.metadata.labels[team]: Invalid value: "risk/ops": must be a label value',
    ),
    (
        "Pod annotation the operator sets",
        _set(
            "spec.podTemplate.metadata.annotations",
            {"controller.kubernetes.io/pod-deletion-cost": "1"},
        ),
        "controller.kubernetes.io/pod-deletion-cost is set by the operator",
    ),
    (
        "node selector key with a space",
        _set("spec.podTemplate.nodeSelector", {"node pool": "workers"}),
        "spec.podTemplate.nodeSelector: Invalid value: every key must be a qualified name",
    ),
    (
        "service account that is no name",
        _set("spec.podTemplate.serviceAccountName", "Finex Worker"),
        'spec.podTemplate.serviceAccountName: Invalid value: "Finex Worker": must be a DNS-1123',
    ),
    (
        "toleration Exists with a value",
        _set("spec.podTemplate.tolerations", [{"key": "k", "operator": "Exists", "value": "v"}]),
        "spec.podTemplate.tolerations[0].value: Invalid value: a toleration with"
        " operator Exists has no value",
    ),
    (
        "toleration without a key or Exists",
        _set("spec.podTemplate.tolerations", [{"operator": "Equal", "value": "v"}]),
        "a toleration without a key must have operator Exists",
    ),
    (
        "toleration with an unknown effect",
        _set("spec.podTemplate.tolerations", [{"key": "k", "effect": "NoRun"}]),
        'spec.podTemplate.tolerations[0].effect: Unsupported value: "NoRun": supported values:'
        ' "NoExecute", "NoSchedule", "PreferNoSchedule"',
    ),
    (
        "environment the operator sets",
        _set("spec.podTemplate.env", [{"name": "REDIS_URL", "value": "redis://elsewhere"}]),
        "spec.podTemplate.env[0].name: Forbidden: REDIS_URL is set by the operator",
    ),
    (
        "the same variable twice",
        _set("spec.podTemplate.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        'spec.podTemplate.env[1]: Duplicate value: {"name":"A"}',
    ),
    (
        "volume with two sources",
        _set(
            "spec.podTemplate.volumes",
            [{"name": "ca", "secret": {"secretName": "a"}, "emptyDir": {}}],
        ),
        "spec.podTemplate.volumes[0]: Invalid value: a volume has exactly one source",
    ),
    (
        "volume with a source the template does not take",
        _set("spec.podTemplate.volumes", [{"name": "host", "hostPath": {"path": "/"}}]),
        'unknown field "spec.podTemplate.volumes[0].hostPath"',
    ),
    (
        "volume named like the operator's",
        _set("spec.podTemplate.volumes", [{"name": "tmp", "emptyDir": {}}]),
        "spec.podTemplate.volumes[0].name: Forbidden: tmp is the operator's volume",
    ),
    (
        "mount of a volume the template lacks",
        _set("spec.podTemplate.volumeMounts", [{"name": "ca", "mountPath": "/etc/ca"}]),
        "spec.podTemplate.volumeMounts: Invalid value: every volumeMounts[].name must"
        " be one of podTemplate.volumes",
    ),
    (
        "mount over /tmp",
        lambda body: body["spec"].update(
            podTemplate={
                "volumes": [{"name": "ca", "emptyDir": {}}],
                "volumeMounts": [{"name": "ca", "mountPath": "/tmp/ca"}],
            }
        ),
        "spec.podTemplate.volumeMounts[0].mountPath: Invalid value: mountPath must"
        " be absolute and outside /tmp",
    ),
    # The quantities spec.podTemplate brings (from the Pod's own types), judged like
    # spec.resources: by the admission policy, naming the field with its index.
    (
        "emptyDir size 512m, with what was meant",
        _set(
            "spec.podTemplate.volumes",
            [{"name": "a", "emptyDir": {}}, {"name": "scratch", "emptyDir": {"sizeLimit": "512m"}}],
        ),
        'spec.podTemplate.volumes[1].emptyDir.sizeLimit: "512m" is 0.512 bytes; a size is whole'
        " bytes (m is milli): did you mean 512Mi?",
    ),
    (
        "emptyDir size 0.5, half a byte",
        _set("spec.podTemplate.volumes", [{"name": "scratch", "emptyDir": {"sizeLimit": 0.5}}]),
        'spec.podTemplate.volumes[0].emptyDir.sizeLimit: "0.5" is 0.5 bytes; a size is whole'
        " bytes: use a binary suffix, such as 512Mi or 1.5Gi",
    ),
    (
        "emptyDir size that is no quantity",
        _set("spec.podTemplate.volumes", [{"name": "scratch", "emptyDir": {"sizeLimit": "half"}}]),
        'spec.podTemplate.volumes[0].emptyDir.sizeLimit: "half" is not a non-negative Kubernetes'
        " quantity: a string such as 500m, 2, 512Mi or 1.5Gi, or a number such as 0.5 or 2",
    ),
    (
        "negative emptyDir size",
        _set("spec.podTemplate.volumes", [{"name": "scratch", "emptyDir": {"sizeLimit": -1}}]),
        'spec.podTemplate.volumes[0].emptyDir.sizeLimit: "-1" is not a non-negative Kubernetes'
        " quantity",
    ),
    (
        "emptyDir size that is an object",
        _set(
            "spec.podTemplate.volumes", [{"name": "scratch", "emptyDir": {"sizeLimit": {"gi": 1}}}]
        ),
        "spec.podTemplate.volumes[0].emptyDir.sizeLimit: must be a non-negative Kubernetes"
        " quantity",
    ),
    (
        "env divisor that is no quantity",
        _set(
            "spec.podTemplate.env",
            [
                {"name": "A", "value": "1"},
                {
                    "name": "MEM",
                    "valueFrom": {
                        "resourceFieldRef": {"resource": "limits.memory", "divisor": "1MB"}
                    },
                },
            ],
        ),
        'spec.podTemplate.env[1].valueFrom.resourceFieldRef.divisor: "1MB" is not a non-negative'
        " Kubernetes quantity",
    ),
    (
        "projected downward API divisor that is no quantity",
        _set(
            "spec.podTemplate.volumes",
            [
                {
                    "name": "info",
                    "projected": {
                        "sources": [
                            {"secret": {"name": "s"}},
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "path": "mem",
                                            "resourceFieldRef": {
                                                "containerName": "worker",
                                                "resource": "limits.memory",
                                                "divisor": "one",
                                            },
                                        }
                                    ]
                                }
                            },
                        ]
                    },
                }
            ],
        ),
        "spec.podTemplate.volumes[0].projected.sources[1].downwardAPI.items[0].resourceFieldRef"
        '.divisor: "one" is not a non-negative Kubernetes quantity',
    ),
    (
        "affinity field Kubernetes does not have",
        _set("spec.podTemplate.affinity", {"nodeAffinity": {"required": []}}),
        'unknown field "spec.podTemplate.affinity.nodeAffinity.required"',
    ),
]


@pytest.mark.parametrize(("edit", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_the_apiserver_refuses_with_the_numbers(
    crd: None, kubectl: Kubectl, edit: Edit, message: str
) -> None:
    body = pool()
    edit(body)
    result = dry_run(kubectl, body)
    assert result.returncode != 0, f"accepted: {body}"
    assert message in result.stderr, result.stderr


ACCEPTED: list[tuple[str, Edit]] = [
    ("63-character pool name with dots", _set("metadata.name", "a.b" * 21)),
    ("Secret name with dots", _set("spec.redis.urlSecretRef.name", "team.finex-redis")),
    ("Secret key with capitals, '_' and '.'", _set("spec.redis.urlSecretRef.key", "REDIS_url.v2")),
    (
        "image with registry, port, tag and digest",
        _set("spec.image", f"registry.example:5000/team/finex-workers:v1.2_3@{DIGEST}"),
    ),
    ("image by digest only", _set("spec.image", f"ghcr.io/finex/workers@{DIGEST}")),
    (
        "integer and string quantities, request equal to limit",
        _set(
            "spec.resources",
            {"requests": {"cpu": 1, "memory": "1e9"}, "limits": {"cpu": "1000m", "memory": "1Gi"}},
        ),
    ),
    (
        "YAML numbers as a Pod takes them: cpu 0.5, memory 1e9",
        _set("spec.resources", {"requests": {"cpu": 0.5, "memory": 1e9}, "limits": {"cpu": 2}}),
    ),
    (
        "fractional cpu as strings, decimal and binary memory",
        _set(
            "spec.resources",
            {
                "requests": {"cpu": "0.25", "memory": "1.5Gi"},
                "limits": {"cpu": "250m", "memory": "2G"},
            },
        ),
    ),
    ("zero cpu", _set("spec.resources.requests.cpu", 0)),
    (
        "emptyDir sizes as a Pod takes them: 1Gi, 1073741824, 1e9, 0",
        _set(
            "spec.podTemplate.volumes",
            [
                {"name": "a", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "b", "emptyDir": {"sizeLimit": 1073741824}},
                {"name": "c", "emptyDir": {"sizeLimit": 1e9}},
                {"name": "d", "emptyDir": {"sizeLimit": 0, "medium": "Memory"}},
            ],
        ),
    ),
    (
        "divisors as a Pod takes them: 1Mi, a number, 1m",
        lambda body: body["spec"].update(
            podTemplate={
                "env": [
                    {
                        "name": "MEM_MI",
                        "valueFrom": {
                            "resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}
                        },
                    },
                    {
                        "name": "CPU",
                        "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": 1}},
                    },
                ],
                "volumes": [
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
                                                    "divisor": "1m",
                                                },
                                            }
                                        ]
                                    }
                                }
                            ]
                        },
                    }
                ],
            }
        ),
    ),
    (
        "DLQ backoff equal to its cap",
        _set("spec.dlq", {"backoffSeconds": 60, "maxBackoffSeconds": 60}),
    ),
    ("a full Pod template", _set("spec.podTemplate", TEMPLATE)),
    (
        "a CA bundle from a projected volume, toleration of every taint",
        _set(
            "spec.podTemplate",
            {
                "tolerations": [{"operator": "Exists"}],
                "volumes": [
                    {
                        "name": "ca",
                        "projected": {
                            "sources": [
                                {
                                    "secret": {
                                        "name": "redis-ca",
                                        "items": [{"key": "ca.crt", "path": "redis.crt"}],
                                    }
                                },
                                {
                                    "configMap": {
                                        "name": "pg-ca",
                                        "items": [{"key": "root.crt", "path": "pg.crt"}],
                                    }
                                },
                            ]
                        },
                    }
                ],
                "volumeMounts": [{"name": "ca", "mountPath": "/etc/finex/ca", "readOnly": True}],
                "env": [{"name": "PGSSLROOTCERT", "value": "/etc/finex/ca/pg.crt"}],
            },
        ),
    ),
]


@pytest.mark.parametrize("edit", [a[1] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_the_edges_are_accepted_and_so_are_their_deployments(
    crd: None, kubectl: Kubectl, edit: Edit
) -> None:
    body = pool()
    edit(body)
    result = dry_run(kubectl, body)
    assert result.returncode == 0, result.stderr
    # What the operator would build from it is accepted too (longest queue name: probability).
    stored = json.loads(
        kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(body)
        ).stdout
    )
    dep = builders.deployment(
        pool=stored["metadata"]["name"],
        uid="00000000-0000-0000-0000-000000000000",
        spec=parse_spec(stored["spec"]),
        queue="probability",
        replicas=1,
        grace_margin=30,
    )
    dep["metadata"]["ownerReferences"] = []  # the owner does not exist in a dry run
    deployment = kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(dep), check=False)
    assert deployment.returncode == 0, deployment.stderr


def test_a_number_quantity_reaches_the_deployment_as_a_pod_reads_it(
    crd: None, kubectl: Kubectl
) -> None:
    """`cpu: 0.5` written as YAML, stored as a number, is 500m in the Deployment's Pods."""
    body = yaml.safe_load("requests: {cpu: 0.5, memory: 1.0e+9}\nlimits: {cpu: 2, memory: 1.5Gi}")
    assert body["requests"] == {"cpu": 0.5, "memory": 1e9}
    pool_body = pool()
    pool_body["spec"]["resources"] = body
    stored = json.loads(
        kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(pool_body)
        ).stdout
    )
    assert stored["spec"]["resources"]["requests"] == {"cpu": 0.5, "memory": 1000000000}
    spec = parse_spec(stored["spec"])
    dep = builders.deployment(
        pool="pool", uid="u", spec=spec, queue="growth", replicas=1, grace_margin=30
    )
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"] == 0.5
    dep["metadata"]["ownerReferences"] = []
    created = json.loads(
        kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(dep)).stdout
    )
    (container,) = created["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1G"},
        "limits": {"cpu": "2", "memory": "1536Mi"},
    }


def test_a_number_size_reaches_the_deployment_as_a_pod_reads_it(
    crd: None, kubectl: Kubectl
) -> None:
    """`sizeLimit: 1073741824` written as YAML, stored as a number, reaches the Deployment as
    that number and its Pods read it as the quantity "1073741824" (1Gi)."""
    template = yaml.safe_load("volumes: [{name: scratch, emptyDir: {sizeLimit: 1073741824}}]")
    pool_body = pool()
    pool_body["spec"]["podTemplate"] = template
    stored = json.loads(
        kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(pool_body)
        ).stdout
    )
    assert stored["spec"]["podTemplate"]["volumes"][0]["emptyDir"] == {"sizeLimit": 1073741824}
    dep = builders.deployment(
        pool="pool", uid="u", spec=parse_spec(stored["spec"]), queue="growth", replicas=1,
        grace_margin=30,
    )  # fmt: skip
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["scratch"]["emptyDir"]["sizeLimit"] == 1073741824
    dep["metadata"]["ownerReferences"] = []
    created = json.loads(
        kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(dep)).stdout
    )
    volumes = {v["name"]: v for v in created["spec"]["template"]["spec"]["volumes"]}
    assert volumes["scratch"]["emptyDir"] == {"sizeLimit": "1073741824"}


def test_a_pool_stored_with_a_bad_size_still_updates(
    crd: None, kubectl: Kubectl, k8s_cluster: k8s.Cluster
) -> None:
    """As for spec.resources: only the sizes a request sets or changes are judged."""
    legacy = pool("legacy-size")
    legacy["spec"]["podTemplate"] = {
        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "512m"}}]
    }
    k8s_cluster.kubectl("delete", "-f", str(BINDING))  # as before the upgrade
    try:
        wait_for(
            "the pool to be stored without the policy",
            lambda: (
                kubectl("apply", "-f", "-", input=json.dumps(legacy), check=False).returncode == 0
            ),
            60,
            0.2,
        )
    finally:
        k8s_cluster.kubectl("apply", "-f", str(BINDING))
    wait_for("the quantity policy to refuse 512m", lambda: _policy_refuses(k8s_cluster), 60, 0.2)
    kubectl("annotate", "fwp", "legacy-size", "finex.io/note=upgraded")
    kubectl(
        "patch", "fwp", "legacy-size", "--type=json",
        "-p", '[{"op": "replace", "path": "/spec/queues/0/replicas", "value": 1}]',
    )  # fmt: skip
    added = {"name": "more", "emptyDir": {"sizeLimit": "256m"}}
    refused = kubectl(
        "patch", "fwp", "legacy-size", "--type=json",
        "-p", json.dumps([{"op": "add", "path": "/spec/podTemplate/volumes/0", "value": added}]),
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "spec.podTemplate.volumes[0].emptyDir.sizeLimit" in refused.stderr, refused.stderr
    assert "did you mean 256Mi?" in refused.stderr, refused.stderr
    assert "512Mi" not in refused.stderr, refused.stderr


def test_a_pool_stored_before_the_policy_still_updates(
    crd: None, kubectl: Kubectl, k8s_cluster: k8s.Cluster
) -> None:
    """An upgrade finds pools the old CRD let through (512m): they keep working.

    The policy judges only the values a request sets or changes, so kopf's annotations and a
    replica change pass, while a new bad value is refused.
    """
    legacy = pool("legacy")
    legacy["spec"]["resources"] = {"limits": {"memory": "512m"}}
    k8s_cluster.kubectl("delete", "-f", str(BINDING))  # as before the upgrade
    try:
        wait_for(
            "the pool to be stored without the policy",
            lambda: (
                kubectl("apply", "-f", "-", input=json.dumps(legacy), check=False).returncode == 0
            ),
            60,
            0.2,
        )
    finally:
        k8s_cluster.kubectl("apply", "-f", str(BINDING))
    wait_for("the quantity policy to refuse 512m", lambda: _policy_refuses(k8s_cluster), 60, 0.2)
    kubectl("annotate", "fwp", "legacy", "finex.io/note=upgraded")
    kubectl(
        "patch", "fwp", "legacy", "--type=json",
        "-p", '[{"op": "replace", "path": "/spec/queues/0/replicas", "value": 1}]',
    )  # fmt: skip
    refused = kubectl(
        "patch", "fwp", "legacy", "--type=merge",
        "-p", '{"spec": {"resources": {"limits": {"memory": "256m"}}}}', check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "did you mean 256Mi?" in refused.stderr, refused.stderr


def test_the_pod_types_are_the_apiservers_own(k8s_cluster: k8s.Cluster, tmp_path: Path) -> None:
    """The generated blocks of spec.podTemplate equal what hack/pod-template-schema.py renders
    from this apiserver's OpenAPI document: they are Kubernetes' types, not a copy that drifts."""
    document = tmp_path / "api__v1_openapi.json"
    document.write_text(k8s_cluster.kubectl("get", "--raw", "/openapi/v3/api/v1").stdout)
    script = CRD.parents[1] / "hack" / "pod-template-schema.py"
    check = subprocess.run(
        [sys.executable, str(script), str(document), "--check"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


def test_the_stored_defaults_agree(crd: None, kubectl: Kubectl) -> None:
    """A pool that sets neither timeout drains at least as long as a job may run."""
    stored = json.loads(
        kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(pool())
        ).stdout
    )
    spec = parse_spec(stored["spec"])
    assert spec.drain_timeout_seconds >= stored["spec"]["jobTimeoutSeconds"]
    long_jobs = pool()
    long_jobs["spec"]["jobTimeoutSeconds"] = 7200
    stored = json.loads(
        kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(long_jobs)
        ).stdout
    )
    assert parse_spec(stored["spec"]).drain_timeout_seconds >= 7200


def test_the_pool_name_limit_is_the_deployments_own(crd: None, kubectl: Kubectl) -> None:
    """A 64-character pool name would give Deployments the apiserver refuses: the label."""
    spec = parse_spec(pool()["spec"])
    dep = builders.deployment(
        pool="p" * 64, uid="u", spec=spec, queue="matrix", replicas=1, grace_margin=30
    )
    dep["metadata"]["ownerReferences"] = []
    result = kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(dep), check=False)
    assert result.returncode != 0
    assert "metadata.labels: Invalid value" in result.stderr
    assert "must be no more than 63 bytes" in result.stderr


# -- kubectl explain, categories ------------------------------------------------------------


def _object_paths(schema: dict[str, Any], path: str) -> Iterator[str]:
    """Every field path of the schema whose node has fields of its own (what explain lists)."""
    node = schema.get("items", schema)
    props = node.get("properties", {})
    if props:
        yield path
    for name, sub in props.items():
        if name != "metadata":
            yield from _object_paths(sub, f"{path}.{name}")


def test_kubectl_explain_describes_every_field(crd: None, kubectl: Kubectl) -> None:
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    paths = list(_object_paths(schema, "fwp"))
    assert {"fwp", "fwp.spec", "fwp.spec.queues", "fwp.status.restart.history"} <= set(paths)
    for path in paths:
        out = kubectl("explain", path).stdout
        assert "<no description>" not in out, f"kubectl explain {path}:\n{out}"
    kind = kubectl("explain", "fwp").stdout
    assert "A FinexWorkerPool runs the Finex RQ workers" in kind
    field = kubectl("explain", "fwp.spec.dlq.maxBackoffSeconds").stdout
    assert "at least backoffSeconds" in field
    # The quantities say which forms they take: strings and YAML numbers, as a Pod does.
    for path in ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory"):
        text = " ".join(kubectl("explain", f"fwp.spec.resources.{path}").stdout.split())
        assert "a string" in text, text
        assert "a YAML number" in text, text
    cpu = " ".join(kubectl("explain", "fwp.spec.resources.requests.cpu").stdout.split())
    assert all(form in cpu for form in ('"500m"', '"0.5"', "0.5", "2")), cpu
    memory = " ".join(kubectl("explain", "fwp.spec.resources.limits.memory").stdout.split())
    assert all(form in memory for form in ('"512Mi"', '"1.5Gi"', '"1G"', "512m")), memory
    # So do the quantities of the Pod template, generated from the Pod's own types.
    for path in (
        "podTemplate.volumes.emptyDir.sizeLimit",
        "podTemplate.env.valueFrom.resourceFieldRef.divisor",
        "podTemplate.volumes.projected.sources.downwardAPI.items.resourceFieldRef.divisor",
    ):
        text = " ".join(kubectl("explain", f"fwp.spec.{path}").stdout.split())
        assert "a string" in text, text
        assert "a YAML number" in text, text
    size = " ".join(
        kubectl("explain", "fwp.spec.podTemplate.volumes.emptyDir.sizeLimit").stdout.split()
    )
    assert all(form in size for form in ('"1Gi"', "1073741824", "512m", "512Mi")), size


def test_pools_are_in_the_finex_category_only(crd: None, kubectl: Kubectl) -> None:
    listed = kubectl("api-resources", "--categories=finex", "-o", "name").stdout.split()
    assert listed == ["finexworkerpools.finex.io"]
    in_all = kubectl("api-resources", "--categories=all", "-o", "name").stdout.split()
    assert "finexworkerpools.finex.io" not in in_all
    kubectl("apply", "-f", "-", input=json.dumps(pool()))
    assert kubectl("get", "finex", "-o", "name").stdout.split() == ["finexworkerpool.finex.io/pool"]


def test_printer_columns_have_descriptions(crd: None, k8s_cluster: k8s.Cluster) -> None:
    stored = json.loads(
        k8s_cluster.kubectl("get", "crd", "finexworkerpools.finex.io", "-o", "json").stdout
    )
    columns = stored["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == [
        "Ready",
        "Restart",
        "Replicas",
        "Desired",
        "Scaling",
        "Waiting",
        "Active",
        "DLQ",
        "Age",
    ]
    assert all(c.get("description") for c in columns), columns
