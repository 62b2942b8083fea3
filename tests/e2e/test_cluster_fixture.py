"""The e2e fixtures' own tests: the local control plane behaves like a cluster where it matters.

Scheduling and Pod status (kwok fake nodes), the controller-manager (ReplicaSets, garbage
collector, ServiceAccount tokens), CRDs, and RBAC for ServiceAccounts and certificate users.
"""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support import cluster as k8s
from tests.support.k8s_fixtures import Kubectl
from tests.support.waiting import wait_for


def deployment(name: str, replicas: int) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "main", "image": "example.invalid/app:1"}]},
                },
            },
        }
    )


def pods(kubectl: Kubectl, selector: str) -> list[dict]:
    return json.loads(kubectl("get", "pods", "-l", selector, "-o", "json").stdout)["items"]


def test_version_reports_the_pinned_release(k8s_cluster: k8s.Cluster, k8s_api: client.ApiClient):
    info = client.VersionApi(k8s_api).get_code()
    expected = k8s.pinned_versions()["KUBERNETES_VERSION"]
    assert info.git_version == expected
    assert f"v{info.major}.{info.minor}" == expected.rsplit(".", 1)[0]


def test_nodes_are_ready_fake_nodes(k8s_api: client.ApiClient):
    nodes = client.CoreV1Api(k8s_api).list_node().items
    assert len(nodes) == 2
    for node in nodes:
        ready = {c.type: c.status for c in node.status.conditions}["Ready"]
        assert ready == "True", node.metadata.name
        assert node.metadata.annotations["kwok.x-k8s.io/node"] == "fake"


def test_deployment_pods_become_running_and_ready_then_scale_to_zero(kubectl: Kubectl):
    kubectl("apply", "-f", "-", input=deployment("web", 3))
    kubectl("rollout", "status", "deployment/web", "--timeout=90s")
    items = pods(kubectl, "app=web")
    assert len(items) == 3
    for pod in items:
        assert pod["status"]["phase"] == "Running"
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"]
        assert ready == "True"
        assert pod["spec"]["nodeName"].startswith("kwok-node-")

    kubectl("scale", "deployment/web", "--replicas=0")
    wait_for("the Pods of web to go", lambda: not pods(kubectl, "app=web"))


def test_deleting_an_owner_garbage_collects_its_children(kubectl: Kubectl, k8s_namespace: str):
    kubectl("apply", "-f", "-", input=deployment("owner", 1))
    kubectl("rollout", "status", "deployment/owner", "--timeout=90s")
    assert kubectl("get", "replicasets", "-l", "app=owner", "-o", "name").stdout.strip()
    owner_uid = kubectl("get", "deployment", "owner", "-o", "jsonpath={.metadata.uid}").stdout
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child-of-owner",
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "owner", "uid": owner_uid}
            ],
        },
        "data": {"k": "v"},
    }
    kubectl("apply", "-f", "-", input=json.dumps(child))

    kubectl("delete", "deployment", "owner", "--wait=false")  # background propagation
    wait_for(
        "the garbage collector to delete ReplicaSets, Pods and the ConfigMap",
        lambda: (
            not kubectl("get", "replicasets,pods", "-l", "app=owner", "-o", "name").stdout
            and kubectl("get", "configmap", "child-of-owner", check=False).returncode != 0
        ),
    )


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.e2e.finex.io"},
    "spec": {
        "group": "e2e.finex.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_a_crd_can_be_applied_and_a_custom_object_created(
    k8s_cluster: k8s.Cluster, k8s_api: client.ApiClient, k8s_namespace: str
):
    k8s_cluster.kubectl("apply", "-f", "-", input=json.dumps(CRD))
    try:
        k8s_cluster.kubectl(
            "wait", "--for=condition=Established", "crd/widgets.e2e.finex.io", "--timeout=60s"
        )
        api = client.CustomObjectsApi(k8s_api)
        widget = {"apiVersion": "e2e.finex.io/v1", "kind": "Widget", "metadata": {"name": "w1"}}
        api.create_namespaced_custom_object(
            "e2e.finex.io", "v1", k8s_namespace, "widgets", {**widget, "spec": {"size": 3}}
        )
        got = api.get_namespaced_custom_object("e2e.finex.io", "v1", k8s_namespace, "widgets", "w1")
        assert got["spec"] == {"size": 3}

        with pytest.raises(ApiException) as refused:  # the schema is enforced
            api.create_namespaced_custom_object(
                "e2e.finex.io", "v1", k8s_namespace, "widgets",
                {**widget, "metadata": {"name": "w2"}, "spec": {"size": 0}},
            )  # fmt: skip
        assert refused.value.status == 422
    finally:
        k8s_cluster.kubectl("delete", "crd", "widgets.e2e.finex.io", "--wait=false")


ROLE = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader-reads-pods}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {kind: ServiceAccount, name: reader, namespace: NAMESPACE}
- {kind: Group, name: "finex:pod-readers", apiGroup: rbac.authorization.k8s.io}
"""


def test_a_service_account_gets_only_what_its_role_grants(
    k8s_cluster: k8s.Cluster, kubectl: Kubectl, k8s_namespace: str
):
    kubectl("apply", "-f", "-", input=ROLE.replace("NAMESPACE", k8s_namespace))
    as_sa = k8s_cluster.kubeconfig_for_service_account(k8s_namespace, "reader")

    assert kubectl("get", "pods", kubeconfig=as_sa).returncode == 0
    assert kubectl("auth", "can-i", "list", "pods", kubeconfig=as_sa).stdout.strip() == "yes"
    refused = kubectl("get", "secrets", kubeconfig=as_sa, check=False)
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr.lower()
    assert "system:serviceaccount:" + k8s_namespace + ":reader" in refused.stderr
    created = kubectl("create", "configmap", "nope", kubeconfig=as_sa, check=False)
    assert created.returncode != 0
    assert "forbidden" in created.stderr.lower()
    can_i = kubectl("auth", "can-i", "create", "deployments", kubeconfig=as_sa, check=False)
    assert can_i.stdout.strip() == "no"


def test_a_certificate_user_gets_its_groups_permissions(
    k8s_cluster: k8s.Cluster, kubectl: Kubectl, k8s_namespace: str
):
    kubectl("apply", "-f", "-", input=ROLE.replace("NAMESPACE", k8s_namespace))
    member = k8s_cluster.kubeconfig_for_user("alice", groups=["finex:pod-readers"])
    outsider = k8s_cluster.kubeconfig_for_user("bob")

    assert kubectl("auth", "can-i", "list", "pods", kubeconfig=member).stdout.strip() == "yes"
    assert kubectl("auth", "can-i", "delete", "pods", kubeconfig=member, check=False).returncode
    denied = kubectl("get", "pods", kubeconfig=outsider, check=False)
    assert denied.returncode != 0
    assert 'User "bob" cannot list resource "pods"' in denied.stderr


def test_server_side_dry_run_validates_without_storing(kubectl: Kubectl):
    kubectl("apply", "--dry-run=server", "-f", "-", input=deployment("dry", 1))
    assert kubectl("get", "deployment", "dry", check=False).returncode != 0


PROMETHEUS_RULE = """
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: demo}
spec:
  groups:
  - name: demo
    rules:
    - {alert: Demo, expr: vector(1), for: 1m}
"""


def test_monitoring_crds_and_a_helm_chart_with_a_kube_version_constraint(
    k8s_cluster: k8s.Cluster, kubectl: Kubectl, k8s_namespace: str, tmp_path
):
    k8s_cluster.install_monitoring_crds()
    kubectl("apply", "-f", "-", input=PROMETHEUS_RULE)
    assert kubectl("get", "prometheusrule", "demo", "-o", "name").stdout.strip()

    chart = tmp_path / "demo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: demo\nversion: 0.1.0\nkubeVersion: '>=1.35.0-0'\n"
    )
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: demo}\n"
        "data: {kube: '{{ .Capabilities.KubeVersion.Version }}'}\n"
    )
    k8s_cluster.helm("install", "demo", str(chart), "--namespace", k8s_namespace, "--wait")
    expected = k8s.pinned_versions()["KUBERNETES_VERSION"]
    assert kubectl("get", "cm", "demo", "-o", "jsonpath={.data.kube}").stdout == expected
