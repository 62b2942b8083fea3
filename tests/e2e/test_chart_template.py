"""The finex-workers chart as rendered by `helm lint` and `helm template` (no cluster needed).

Each test parses the rendered YAML and checks objects, not text. The installed behaviour (Pod
Security admission, RBAC as the apiserver sees it, upgrade and uninstall, a real reconcile) is
in test_chart_install.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import cluster as k8s
from tests.support.chart import CHART, CRD_NAME, REPO, find, one, pod_specs, render, render_error

ALL_ON = {
    "serviceMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True},
    "samplePool": {"enabled": True},
    "migrations": {"enabled": True},
    "podMonitor": {"enabled": True},
}
FORBIDDEN_VERBS = {"*", "escalate", "bind", "impersonate", "delete", "deletecollection"}


def test_helm_lint_strict() -> None:
    tools = k8s.find_tools()
    version = k8s.pinned_versions()["KUBERNETES_VERSION"]
    for extra in (
        [],
        ["--set", "operator.watchNamespaces={a,b}", "--set", "samplePool.enabled=true"],
        ["--set", "operator.clusterWide=true"],
    ):
        proc = subprocess.run(
            [
                str(tools.path("helm")),
                "lint",
                "--strict",
                "--kube-version",
                version,
                str(CHART),
                *extra,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_render_has_the_expected_objects() -> None:
    kinds = sorted(o["kind"] for o in render())
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Deployment",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]


def test_switches_add_and_remove_objects() -> None:
    on = render(ALL_ON)
    assert len(find(on, "ServiceMonitor")) == 1
    assert len(find(on, "PodMonitor")) == 1
    assert len(find(on, "PrometheusRule")) == 1
    assert len(find(on, "FinexWorkerPool")) == 1
    off = render(
        {
            "crds": {"enabled": False},
            "exporter": {"enabled": False},
            "networkPolicy": {"enabled": False},
        }
    )
    assert sorted(o["kind"] for o in off) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]


def test_crd_is_the_source_with_a_keep_policy() -> None:
    source = yaml.safe_load((REPO / "crds" / "finexworkerpools.yaml").read_text())
    crd = one(render(), "CustomResourceDefinition", CRD_NAME)
    assert crd["spec"] == source["spec"]
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    # The quantity policy and its binding go with the CRD, from their sources, kept too.
    for kind, name in (
        ("ValidatingAdmissionPolicy", "finexworkerpools-quantities-policy.yaml"),
        ("ValidatingAdmissionPolicyBinding", "finexworkerpools-quantities-binding.yaml"),
    ):
        rendered = one(render(), kind)
        assert rendered["spec"] == yaml.safe_load((REPO / "crds" / name).read_text())["spec"]
        assert rendered["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    unkept = one(render({"crds": {"keep": False}}), "CustomResourceDefinition", CRD_NAME)
    assert "annotations" not in unkept["metadata"]


def test_prometheus_rule_is_the_source() -> None:
    source = yaml.safe_load((REPO / "ops" / "prometheus-rules.yml").read_text())
    rule = one(render(ALL_ON), "PrometheusRule")
    assert rule["spec"] == source
    # Prometheus' own templates are passed through untouched, not run by Helm.
    assert "{{ $labels.queue }}" in yaml.safe_dump(rule["spec"], width=1000)


def test_runbook_base_url_prefixes_every_runbook_link() -> None:
    values = {"prometheusRule": {"enabled": True, "runbookBaseUrl": "https://git.example/f/"}}
    rules = [r for g in one(render(values), "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    urls = [r["annotations"]["runbook_url"] for r in rules if "runbook_url" in r["annotations"]]
    assert urls
    assert all(u.startswith("https://git.example/f/docs/runbook.md#") for u in urls)


def test_service_monitor_scrapes_the_exporter_as_job_finex_exporter() -> None:
    objects = render(ALL_ON, release="prod")
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert {"action": "replace", "targetLabel": "job", "replacement": "finex-exporter"} in endpoint[
        "relabelings"
    ]
    # ...the job name the rules expect.
    assert 'job="finex-exporter"' in (REPO / "ops" / "prometheus-rules.yml").read_text()


def test_service_monitor_without_exporter_is_refused() -> None:
    error = render_error({"serviceMonitor": {"enabled": True}, "exporter": {"enabled": False}})
    assert "serviceMonitor.enabled needs exporter.enabled" in error


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook() -> None:
    assert find(render(), "Job") == []
    (job,) = find(render({"migrations": {"enabled": True}}), "Job")
    hooks = job["metadata"]["annotations"]
    assert set(hooks["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "hook-succeeded" in hooks["helm.sh/hook-delete-policy"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["args"] == ["db", "migrate"]
    (env,) = container["env"]
    assert env["name"] == "DATABASE_URL"
    assert env["valueFrom"]["secretKeyRef"] == {"name": "finex-postgres", "key": "url"}


def test_operator_deployment_runs_one_kopf_with_recreate() -> None:
    dep = one(render(), "Deployment", "r-finex-workers-operator")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["kopf"]
    assert container["args"][:3] == ["run", "--module=finex_operator.handlers", "--standalone"]
    assert "--namespace=finex" in container["args"]  # the release namespace by default
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "r-finex-workers-operator"


def test_exporter_runs_finex_exporter_with_redis_from_a_secret() -> None:
    values = {
        "exporter": {"redisUrlSecretRef": {"name": "queues", "key": "redis"}, "queue": "growth"}
    }
    dep = one(render(values), "Deployment", "r-finex-workers-exporter")
    spec = dep["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert "command" not in container  # the image's ENTRYPOINT, finex, stays PID 1
    assert container["args"][0] == "exporter"
    assert "--worker=growth" in container["args"]
    assert container["env"][1] == {
        "name": "REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": "queues", "key": "redis"}},
    }
    assert spec["automountServiceAccountToken"] is False


def test_every_pod_is_hardened() -> None:
    specs = pod_specs(render(ALL_ON))
    assert len(specs) == 3
    for where, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] > 0, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert "memory" in c["resources"]["limits"], where


def _rules(objects: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (o["kind"], o["metadata"].get("namespace", ""), rule)
        for o in objects
        if o["kind"] in {"ClusterRole", "Role"}
        for rule in o["rules"]
    ]


@pytest.mark.parametrize(
    "operator", [{}, {"watchNamespaces": ["team-a", "team-b"]}, {"clusterWide": True}]
)
def test_rbac_has_no_wildcards_and_no_dangerous_verbs(operator: dict[str, Any]) -> None:
    for kind, ns, rule in _rules(render({"operator": operator})):
        where = f"{kind} {ns} {rule}"
        assert "*" not in rule["apiGroups"], where
        assert "*" not in rule["resources"], where
        forbidden = FORBIDDEN_VERBS
        if rule["resources"] == ["deployments"]:  # a queue removed from spec.queues
            forbidden = FORBIDDEN_VERBS - {"delete"}
        assert not forbidden & set(rule["verbs"]), where
        assert not {"pods/exec", "pods/attach", "pods/portforward"} & set(rule["resources"]), where
        assert "resourceNames" not in rule, where


def test_the_default_serves_the_release_namespace_with_a_role() -> None:
    """Namespaced by default: no Secret, Pod or Deployment of another namespace is reachable."""
    objects = render()
    (role,) = find(objects, "Role")
    assert role["metadata"]["namespace"] == "finex"
    assert one(objects, "RoleBinding")["metadata"]["namespace"] == "finex"
    cluster_role = one(objects, "ClusterRole")
    assert [(r["resources"], r["verbs"]) for r in cluster_role["rules"]] == [
        (["customresourcedefinitions"], ["list", "watch"]),
        (["namespaces"], ["list", "watch"]),
    ]
    args = one(objects, "Deployment", "r-finex-workers-operator")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert "--namespace=finex" in args
    assert "--all-namespaces" not in args


def notes(cluster: k8s.Cluster, namespace: str, *args: str) -> str:
    """NOTES.txt as `helm install --dry-run=client` prints it (helm template does not render it).

    Without the CRDs: even a client-side dry-run checks that the cluster's objects may join the
    release, and refuses when another test's release installed the CRD first; the notes do
    not depend on them."""
    out = cluster.helm(
        "install", "r", str(CHART), "--dry-run=client", "--namespace", namespace,
        "--set", "crds.enabled=false", *args,
    )  # fmt: skip
    return out.stdout.split("NOTES:", 1)[1]


def test_cluster_wide_is_an_opt_in_that_the_notes_warn_about(
    k8s_cluster: k8s.Cluster, k8s_namespace: str
) -> None:
    default = notes(k8s_cluster, k8s_namespace)
    assert f"serves FinexWorkerPools in {k8s_namespace} (a Role in each)" in default
    assert "WARNING" not in default
    wide = notes(k8s_cluster, k8s_namespace, "--set", "operator.clusterWide=true")
    assert "serves FinexWorkerPools in every namespace" in wide
    assert "WARNING: operator.clusterWide=true" in wide
    message = render_error({"operator": {"clusterWide": True, "watchNamespaces": ["a"]}})
    assert "operator.clusterWide serves every namespace" in message


def test_cluster_wide_watch_uses_one_cluster_role() -> None:
    objects = render({"operator": {"clusterWide": True}})
    assert find(objects, "Role") == []
    role = one(objects, "ClusterRole")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert {"customresourcedefinitions", "finexworkerpools", "deployments", "secrets"} <= resources
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "r-finex-workers-operator", "namespace": "finex"}
    ]


def test_namespaced_watch_uses_a_role_per_namespace() -> None:
    objects = render({"operator": {"watchNamespaces": ["team-a", "team-b"]}})
    roles = find(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = find(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for b in bindings:
        assert b["subjects"][0]["namespace"] == "finex"
    # Only kopf's scans stay cluster-wide: CRDs, and Namespaces to match the list.
    cluster_role = one(objects, "ClusterRole")
    assert [(r["resources"], r["verbs"]) for r in cluster_role["rules"]] == [
        (["customresourcedefinitions"], ["list", "watch"]),
        (["namespaces"], ["list", "watch"]),
    ]
    args = one(objects, "Deployment", "r-finex-workers-operator")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert "--namespace=team-a" in args
    assert "--namespace=team-b" in args
    assert "--all-namespaces" not in args


def test_network_policy_limits_worker_egress_in_every_pool_namespace() -> None:
    redis_peer = {"podSelector": {"matchLabels": {"app": "redis"}}}
    objects = render(
        {
            "operator": {"watchNamespaces": ["team-a"]},
            "networkPolicy": {"redis": {"port": 6380, "to": [redis_peer]}},
        }
    )
    policies = find(objects, "NetworkPolicy")
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["finex", "team-a"]
    for policy in policies:
        spec = policy["spec"]
        # The operator labels every worker pod with finex.io/pool (operator builders).
        assert spec["podSelector"] == {
            "matchExpressions": [{"key": "finex.io/pool", "operator": "Exists"}]
        }
        assert spec["policyTypes"] == ["Egress"]
        ports = [(p["port"], p["protocol"]) for rule in spec["egress"] for p in rule["ports"]]
        assert ports == [(6380, "TCP"), (5432, "TCP"), (53, "UDP"), (53, "TCP")]
        assert spec["egress"][0]["to"] == [redis_peer]


def test_network_policy_selects_the_pods_the_operator_builds() -> None:
    from finex_operator import builders

    assert builders.POOL_LABEL == "finex.io/pool"


@pytest.mark.parametrize(
    ("operator", "selector"),
    [
        ({}, {"matchNames": ["finex"]}),
        ({"watchNamespaces": ["team-a"]}, {"matchNames": ["team-a"]}),
        ({"clusterWide": True}, {"any": True}),
    ],
)
def test_pod_monitor_scrapes_the_metrics_port_of_the_pods_the_operator_builds(
    operator: dict[str, Any], selector: dict[str, Any]
) -> None:
    from finex_operator import builders
    from finex_operator.spec import parse_spec

    (monitor,) = find(
        render({"podMonitor": {"enabled": True}, "operator": operator}),
        "PodMonitor",
    )
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == selector
    (expr,) = spec["selector"]["matchExpressions"]
    (endpoint,) = spec["podMetricsEndpoints"]
    # A worker Deployment as the operator builds it: the selector matches, the port exists.
    pool_spec = parse_spec(
        {
            "image": "x",
            "queues": [{"name": "growth", "replicas": 1, "concurrency": 2}],
            "redis": {"urlSecretRef": {"name": "s", "key": "r"}},
            "database": {"urlSecretRef": {"name": "s", "key": "d"}, "connectionBudget": 10},
        }
    )
    dep = builders.deployment(
        pool="p", uid="u", spec=pool_spec, queue="growth", replicas=1, grace_margin=30
    )
    template = dep["spec"]["template"]
    assert expr == {"key": "finex.io/pool", "operator": "Exists"}
    assert expr["key"] in template["metadata"]["labels"]
    ports = [p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])]
    assert endpoint["port"] in ports


def test_sample_pool_defaults_its_image_to_the_chart_image() -> None:
    pool = one(
        render({"samplePool": {"enabled": True}, "image": {"tag": "1.2.3"}}), "FinexWorkerPool"
    )
    assert pool["spec"]["image"] == "finex-workers:1.2.3"
    assert pool["metadata"]["name"] == "finex"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"exporter": {"port": 0}}, "at '/exporter/port': minimum: got 0, want 1"),
        ({"operator": {"logLevel": "loud"}}, "at '/operator/logLevel': value must be one of"),
        ({"operator": {"watchNamespaces": ["Team_A"]}}, "'Team_A' does not match pattern"),
        ({"operator": {"watchNamespaces": ["a", "a"]}}, "items at 0 and 1 are equal"),
        ({"opertor": {}}, "additional properties 'opertor' not allowed"),
        ({"crds": {"enabled": "yes"}}, "at '/crds/enabled': got string, want boolean"),
        ({"exporter": {"redisUrlSecretRef": {"name": ""}}}, "at '/exporter/redisUrlSecretRef"),
        ({"serviceMonitor": {"interval": "soon"}}, "'soon' does not match pattern"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot': value must be true"),
        (
            {"securityContext": {"allowPrivilegeEscalation": True, "readOnlyRootFilesystem": True}},
            "allowPrivilegeEscalation': value must be false",
        ),
        ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of"),
        ({"migrations": {"backoffLimit": -1}}, "at '/migrations/backoffLimit': minimum: got -1"),
    ],
)
def test_schema_refuses_bad_values_with_a_clear_message(
    values: dict[str, Any], message: str
) -> None:
    error = render_error(values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error


def test_the_documented_values_file_is_the_default() -> None:
    # values.yaml renders as is (no value is required that the file leaves out).
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert render(defaults) == render()


def test_chart_works_for_any_release_name() -> None:
    objects = render(release="finex-workers", namespace="ops")
    names = {o["metadata"]["name"] for o in objects}
    assert "finex-workers-operator" in names
    assert all(len(n) <= 63 for n in names if not n.endswith(".finex.io"))
    path = Path(CHART / "Chart.yaml")
    assert yaml.safe_load(path.read_text())["name"] == "finex-workers"


def _names(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


@pytest.mark.parametrize(
    ("release", "values", "prefix"),
    [
        ("finex", {}, "finex"),  # the product's name: not repeated (was finex-finex-workers-...)
        ("finex-workers", {}, "finex-workers"),
        ("prod-finex-workers-eu", {}, "prod-finex-workers-eu"),
        ("prod", {}, "prod-finex-workers"),
        ("prod", {"nameOverride": "fx"}, "prod-fx"),
        ("prod", {"fullnameOverride": "queues"}, "queues"),
    ],
)
def test_object_names_do_not_repeat_the_release(
    release: str, values: dict[str, Any], prefix: str
) -> None:
    objects = render(values, release=release)
    names = _names(objects)
    assert {
        ("Deployment", f"{prefix}-operator"),
        ("Deployment", f"{prefix}-exporter"),
        ("Service", f"{prefix}-exporter"),
        ("ServiceAccount", f"{prefix}-operator"),
        ("ServiceAccount", f"{prefix}-exporter"),
        ("NetworkPolicy", f"{prefix}-workers-egress"),
        ("ClusterRole", f"finex-{prefix}-operator"),  # cluster-scoped: the namespace first
    } <= names
    on = _names(render({**values, **ALL_ON}, release=release))
    assert {("Job", f"{prefix}-migrate"), ("PodMonitor", f"{prefix}-workers")} <= on
    assert ("PrometheusRule", prefix) in on
    app = {o["metadata"]["labels"]["app.kubernetes.io/name"] for o in objects}
    assert app == {values.get("nameOverride", "finex-workers")}


def test_service_accounts_can_be_brought_along() -> None:
    values = {
        "operator": {"serviceAccount": {"create": False, "name": "ops-sa"}},
        "exporter": {"serviceAccount": {"create": False}},
    }
    objects = render(values, release="finex")
    assert find(objects, "ServiceAccount") == []
    pods = pod_specs(objects)
    assert pods["Deployment/finex-operator"]["serviceAccountName"] == "ops-sa"
    assert pods["Deployment/finex-exporter"]["serviceAccountName"] == "default"
    binding = one(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ops-sa", "namespace": "finex"}
    ]
    named = render({"exporter": {"serviceAccount": {"name": "metrics"}}}, release="finex")
    assert ("ServiceAccount", "metrics") in _names(named)
    assert pod_specs(named)["Deployment/finex-exporter"]["serviceAccountName"] == "metrics"


def test_deployments_keep_a_bounded_revision_history() -> None:
    for values, limit in (({}, 3), ({"revisionHistoryLimit": 0}, 0)):
        for dep in find(render(values), "Deployment"):
            assert dep["spec"]["revisionHistoryLimit"] == limit, dep["metadata"]["name"]


def test_chart_metadata_follows_the_conventions() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    # The project publishes no URL: no home, sources or icon rather than placeholders.
    for key in ("home", "sources", "icon"):
        assert key not in chart, key
    assert {"finex", "rq", "operator"} <= set(chart["keywords"])


def test_helm_template_works_without_kube_version(tmp_path: Path) -> None:
    """helm is built with its default-Kubernetes-version ldflags (hack/build-k8s-tools.sh).

    Without them helm assumes v1.20.0 and refuses the chart's kubeVersion (>=1.30.0-0).
    """
    helm = str(k8s.find_tools().path("helm"))
    proc = subprocess.run(
        [helm, "template", "finex", str(CHART)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    probe = tmp_path / "probe"
    (probe / "templates").mkdir(parents=True)
    (probe / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (probe / "templates" / "v.yaml").write_text(
        "kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    out = subprocess.run(
        [helm, "template", "p", str(probe)], capture_output=True, text=True, check=True
    ).stdout
    version = yaml.safe_load(out)["kubeVersion"]
    major, minor = (int(x) for x in version.lstrip("v").split(".")[:2])
    assert (major, minor) >= (1, 30), version
