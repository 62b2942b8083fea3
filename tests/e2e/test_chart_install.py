"""The finex-workers chart installed on the real control plane.

- Into a namespace that enforces the "restricted" Pod Security Standard: every pod of the chart
  is admitted and becomes Ready (kwok runs pods without their image), a non-compliant pod is
  refused. The PrometheusRule and ServiceMonitor CRDs come from prometheus-operator's manifests.
- `kubectl auth can-i` for the operator's ServiceAccount: exactly the allowed verbs, cluster-wide
  and per namespace.
- Upgrade (toggles on, cluster-wide to namespaced) and uninstall leave only the kept CRD.
- The operator, run on this host with the command line of the installed Deployment and the
  installed ServiceAccount's token, reconciles a pool: its RBAC is enough (and the can-i matrix
  shows it is not more).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import cluster as k8s
from tests.support.chart import CHART, CRD_NAME, REPO, adopt_crd
from tests.support.waiting import wait_for

#: helm flags that turn on every monitoring object the chart ships (their CRDs are installed first).
MONITORING = (
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "prometheusRule.enabled=true",
    "--set",
    "podMonitor.enabled=true",
)

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def helm_install(
    cluster: k8s.Cluster, release: str, namespace: str, *args: str, verb: str = "install"
) -> subprocess.CompletedProcess[str]:
    """helm install/upgrade --wait, after handing a CRD kept from earlier tests to this release."""
    adopt_crd(cluster, release, namespace)
    return cluster.helm(
        verb, release, str(CHART), "--namespace", namespace, "--wait", "--timeout", "120s", *args
    )


def restrict(cluster: k8s.Cluster, namespace: str) -> None:
    cluster.kubectl(
        "label", "--overwrite", "namespace", namespace, *(f"{k}={v}" for k, v in RESTRICTED.items())
    )


def get_json(cluster: k8s.Cluster, *args: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", "-o", "json", *args).stdout)


def operator_sa(release: str) -> str:
    return f"{release}-finex-workers-operator"


@pytest.fixture
def other_namespace(k8s_cluster: k8s.Cluster, k8s_namespace: str) -> Iterator[str]:
    name = f"{k8s_namespace[:55]}-other"
    k8s_cluster.kubectl("create", "namespace", name)
    yield name
    k8s_cluster.kubectl(
        "delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False
    )


@pytest.fixture
def release(k8s_cluster: k8s.Cluster, k8s_namespace: str) -> Iterator[str]:
    """A release name; uninstalled afterwards if the test left it installed."""
    name = "fx"
    yield name
    k8s_cluster.helm("uninstall", name, "--namespace", k8s_namespace, check=False)


# --- Pod Security admission ------------------------------------------------------------------


def test_install_in_a_restricted_namespace_admits_every_pod(
    k8s_cluster: k8s.Cluster, k8s_namespace: str, release: str
) -> None:
    k8s_cluster.install_monitoring_crds()
    restrict(k8s_cluster, k8s_namespace)
    result = helm_install(
        k8s_cluster,
        release,
        k8s_namespace,
        *MONITORING,
        # The migration hook Job must be admitted and complete, or the install fails.
        "--set",
        "migrations.enabled=true",
    )
    assert "would violate PodSecurity" not in result.stderr

    pods = get_json(
        k8s_cluster, "pods", "-n", k8s_namespace, "-l", f"app.kubernetes.io/instance={release}"
    )
    # The hook's pod may still be there (succeeded) or already collected with its Job.
    running = [p for p in pods["items"] if p["status"]["phase"] != "Succeeded"]
    components = sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in running)
    assert components == ["exporter", "operator"]
    for pod in running:
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True", pod["metadata"]["name"]
    # No ReplicaSet was refused a pod on the way.
    events = k8s_cluster.kubectl(
        "get", "events", "-n", k8s_namespace, "--field-selector", "reason=FailedCreate"
    )
    assert "No resources found" in events.stderr + events.stdout

    rule = get_json(k8s_cluster, "prometheusrule", "-n", k8s_namespace, f"{release}-finex-workers")
    assert rule["spec"]["groups"][0]["name"] == "finex-workers"
    monitor = get_json(
        k8s_cluster, "servicemonitor", "-n", k8s_namespace, f"{release}-finex-workers-exporter"
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_a_non_compliant_pod_is_refused_in_the_restricted_namespace(
    k8s_cluster: k8s.Cluster, k8s_namespace: str
) -> None:
    restrict(k8s_cluster, k8s_namespace)
    refused = k8s_cluster.kubectl(
        "run",
        "rooty",
        "--namespace",
        k8s_namespace,
        "--image=finex-workers:0.1.0",
        "--restart=Never",
        check=False,
    )
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr
    assert "runAsNonRoot != true" in refused.stderr


# --- RBAC of the operator ---------------------------------------------------------------------


def can_i(cluster: k8s.Cluster, sa: str, verb: str, resource: str, namespace: str | None) -> bool:
    """`kubectl auth can-i` as the account; "pods/exec" means the exec subresource of pods."""
    where = ["--namespace", namespace] if namespace else ["--all-namespaces"]
    kind, _, sub = resource.partition("/")
    subresource = [f"--subresource={sub}"] if sub else []
    result = cluster.kubectl(
        "auth", "can-i", verb, kind, *subresource, f"--as={sa}", *where, check=False
    )
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, result.stdout + result.stderr
    return answer == "yes"


# Everything the operator uses (operator/finex_operator/cluster.py and kopf itself).
ALLOWED = [
    ("get", "finexworkerpools.finex.io"),
    ("list", "finexworkerpools.finex.io"),
    ("watch", "finexworkerpools.finex.io"),
    ("patch", "finexworkerpools.finex.io"),
    ("patch", "finexworkerpools.finex.io/status"),
    ("update", "finexworkerpools.finex.io/finalizers"),
    ("get", "deployments.apps"),
    ("list", "deployments.apps"),
    ("create", "deployments.apps"),
    ("update", "deployments.apps"),
    ("patch", "deployments.apps"),  # replicas only: a restart, a removed queue
    ("delete", "deployments.apps"),  # a queue removed from spec.queues
    ("list", "pods"),
    ("watch", "pods"),
    ("patch", "pods"),
    ("get", "secrets"),
    ("create", "events"),
]
# A sample of what it must not do.
REFUSED = [
    ("create", "finexworkerpools.finex.io"),
    ("update", "finexworkerpools.finex.io"),
    ("delete", "finexworkerpools.finex.io"),
    ("deletecollection", "deployments.apps"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "secrets"),
    ("update", "secrets"),
    ("get", "pods"),
    ("create", "pods"),
    ("delete", "pods"),
    ("create", "pods/exec"),
    ("get", "pods/exec"),
    ("create", "pods/attach"),
    ("create", "pods/portforward"),
    ("get", "pods/log"),
    ("get", "configmaps"),
    ("create", "serviceaccounts/token"),
    ("create", "events.events.k8s.io"),
    ("patch", "events"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("escalate", "roles.rbac.authorization.k8s.io"),
    ("bind", "roles.rbac.authorization.k8s.io"),
    ("impersonate", "serviceaccounts"),
    ("*", "*"),
]
CLUSTER_ALLOWED = [
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
]
CLUSTER_REFUSED = [
    ("get", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("list", "nodes"),
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("create", "namespaces"),
    ("delete", "namespaces"),
]


def _matrix(
    cluster: k8s.Cluster, sa: str, namespace: str | None, rows: list[tuple[str, str]]
) -> dict[str, bool]:
    return {
        f"{verb} {resource}": can_i(cluster, sa, verb, resource, namespace)
        for verb, resource in rows
    }


def test_the_default_install_reaches_no_other_namespace(
    k8s_cluster: k8s.Cluster, k8s_namespace: str, other_namespace: str, release: str
) -> None:
    """Namespaced by default: the operator's token reads Secrets, patches Pods and writes
    Deployments in the release's namespace only; `kubectl auth can-i` shows no cluster-wide
    access to any of them."""
    helm_install(k8s_cluster, release, k8s_namespace)
    sa = f"system:serviceaccount:{k8s_namespace}:{operator_sa(release)}"
    assert all(_matrix(k8s_cluster, sa, k8s_namespace, ALLOWED).values())
    assert not any(_matrix(k8s_cluster, sa, k8s_namespace, REFUSED).values())
    for where in (other_namespace, "kube-system", None):
        granted = {k: v for k, v in _matrix(k8s_cluster, sa, where, ALLOWED).items() if v}
        assert granted == {}, (where, granted)
    for verb, resource in [("get", "secrets"), ("list", "secrets"), ("patch", "pods")]:
        assert not can_i(k8s_cluster, sa, verb, resource, None), (verb, resource)
    assert all(_matrix(k8s_cluster, sa, None, CLUSTER_ALLOWED).values())
    assert not any(_matrix(k8s_cluster, sa, None, CLUSTER_REFUSED).values())


def test_operator_rbac_cluster_wide_is_exactly_what_it_uses(
    k8s_cluster: k8s.Cluster, k8s_namespace: str, other_namespace: str, release: str
) -> None:
    helm_install(k8s_cluster, release, k8s_namespace, "--set", "operator.clusterWide=true")
    sa = f"system:serviceaccount:{k8s_namespace}:{operator_sa(release)}"
    for ns in (k8s_namespace, other_namespace, None):
        assert all(_matrix(k8s_cluster, sa, ns, ALLOWED).values()), (
            ns,
            _matrix(k8s_cluster, sa, ns, ALLOWED),
        )
        assert not any(_matrix(k8s_cluster, sa, ns, REFUSED).values()), (
            ns,
            _matrix(k8s_cluster, sa, ns, REFUSED),
        )
    assert all(_matrix(k8s_cluster, sa, None, CLUSTER_ALLOWED).values())
    assert not any(_matrix(k8s_cluster, sa, None, CLUSTER_REFUSED).values())
    # Cluster-wide, kopf watches the pools at cluster scope and needs no namespace list.
    assert not can_i(k8s_cluster, sa, "list", "namespaces", None)
    # The exporter's account may do nothing at all.
    exporter = f"system:serviceaccount:{k8s_namespace}:{release}-finex-workers-exporter"
    assert not any(_matrix(k8s_cluster, exporter, k8s_namespace, ALLOWED).values())


def test_operator_rbac_namespaced_reaches_only_the_watched_namespaces(
    k8s_cluster: k8s.Cluster, k8s_namespace: str, other_namespace: str, release: str
) -> None:
    helm_install(
        k8s_cluster,
        release,
        k8s_namespace,
        "--set",
        f"operator.watchNamespaces={{{other_namespace}}}",
    )
    sa = f"system:serviceaccount:{k8s_namespace}:{operator_sa(release)}"
    assert all(_matrix(k8s_cluster, sa, other_namespace, ALLOWED).values())
    assert not any(_matrix(k8s_cluster, sa, other_namespace, REFUSED).values())
    # Not the release namespace (it was not listed), not cluster-wide.
    assert not any(_matrix(k8s_cluster, sa, k8s_namespace, ALLOWED).values())
    assert not any(_matrix(k8s_cluster, sa, None, ALLOWED).values())
    assert all(_matrix(k8s_cluster, sa, None, CLUSTER_ALLOWED).values())
    assert not any(_matrix(k8s_cluster, sa, None, CLUSTER_REFUSED).values())
    # kopf matches its namespace list against the Namespaces it lists and watches.
    assert can_i(k8s_cluster, sa, "list", "namespaces", None)
    assert can_i(k8s_cluster, sa, "watch", "namespaces", None)
    assert not can_i(k8s_cluster, sa, "get", "namespaces", None)


# --- upgrade and uninstall --------------------------------------------------------------------

NAMESPACED_KINDS = (
    "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,networkpolicies,"
    "servicemonitors,podmonitors,prometheusrules,finexworkerpools,configmaps"
)


def leftovers(cluster: k8s.Cluster, release: str, namespaces: list[str]) -> list[str]:
    """Every object of the release still present (by the instance label), plus Helm's secrets."""
    found: list[str] = []
    selector = f"app.kubernetes.io/instance={release}"
    for ns in namespaces:
        out = cluster.kubectl(
            "get", NAMESPACED_KINDS, "-n", ns, "-l", selector, "-o", "name"
        ).stdout
        found += [f"{ns}/{line}" for line in out.split()]
        secrets = cluster.kubectl(
            "get", "secrets", "-n", ns, "-l", f"owner=helm,name={release}", "-o", "name"
        ).stdout
        found += [f"{ns}/{line}" for line in secrets.split()]
    out = cluster.kubectl(
        "get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name"
    ).stdout
    found += out.split()
    return found


def test_upgrade_then_uninstall_leaves_only_the_kept_crd(
    k8s_cluster: k8s.Cluster, k8s_namespace: str, other_namespace: str, release: str
) -> None:
    k8s_cluster.install_monitoring_crds()
    helm_install(k8s_cluster, release, k8s_namespace, "--set", "operator.clusterWide=true")
    assert get_json(
        k8s_cluster, "clusterrole", f"{k8s_namespace}-{release}-finex-workers-operator"
    )["rules"]

    # Upgrade: monitoring and the sample pool on (the CRD exists now), watch one namespace.
    helm_install(
        k8s_cluster,
        release,
        k8s_namespace,
        *MONITORING,
        "--set",
        "samplePool.enabled=true",
        "--set",
        f"operator.watchNamespaces={{{other_namespace}}}",
        verb="upgrade",
    )
    assert (
        get_json(k8s_cluster, "fwp", "finex", "-n", k8s_namespace)["spec"]["image"]
        == f"finex-workers:{k8s.pinned_project_version()}"
    )
    assert get_json(
        k8s_cluster, "role", f"{release}-finex-workers-operator", "-n", other_namespace
    )["rules"]
    policy = get_json(
        k8s_cluster,
        "networkpolicy",
        f"{release}-finex-workers-workers-egress",
        "-n",
        other_namespace,
    )
    assert policy["spec"]["policyTypes"] == ["Egress"]
    # The ClusterRole shrank to kopf's CRD scan.
    cluster_role = get_json(
        k8s_cluster, "clusterrole", f"{k8s_namespace}-{release}-finex-workers-operator"
    )
    assert [r["resources"] for r in cluster_role["rules"]] == [
        ["customresourcedefinitions"],
        ["namespaces"],
    ]
    history = k8s_cluster.helm("history", release, "-n", k8s_namespace, "-o", "json").stdout
    assert [h["status"] for h in json.loads(history)] == ["superseded", "deployed"]

    k8s_cluster.helm(
        "uninstall", release, "--namespace", k8s_namespace, "--wait", "--timeout", "120s"
    )
    namespaces = [k8s_namespace, other_namespace]
    wait_for(
        "the release's objects to go", lambda: not leftovers(k8s_cluster, release, namespaces), 90
    )
    assert k8s_cluster.helm("list", "-a", "-n", k8s_namespace, "-q").stdout.strip() == ""
    crd = get_json(k8s_cluster, "crd", CRD_NAME)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_turning_crds_off_in_an_upgrade_keeps_the_crd(
    k8s_cluster: k8s.Cluster, k8s_namespace: str, release: str
) -> None:
    helm_install(k8s_cluster, release, k8s_namespace)
    helm_install(k8s_cluster, release, k8s_namespace, "--set", "crds.enabled=false", verb="upgrade")
    assert get_json(k8s_cluster, "crd", CRD_NAME)["metadata"]["name"] == CRD_NAME


# --- the installed operator reconciles a pool with its own RBAC ---------------------------------


class HostOperator:
    """The installed operator Deployment's command line, run here with the ServiceAccount token."""

    def __init__(self, argv: list[str], kubeconfig: Path, log: Path, health_port: int) -> None:
        venv_bin = str(Path(sys.executable).parent)  # kopf is a console script of the venv
        env = {
            **os.environ,
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "KUBECONFIG": str(kubeconfig),
            "FINEX_OPERATOR_SWEEP_SECONDS": "1",
        }
        self.log = log
        self.health = f"http://127.0.0.1:{health_port}/healthz"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def healthy(self) -> bool:
        assert self.proc.poll() is None, f"the operator exited:\n{self.output()[-3000:]}"
        try:
            with urllib.request.urlopen(self.health, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def installed_operator_argv(
    cluster: k8s.Cluster, namespace: str, release: str, health_port: int
) -> list[str]:
    dep = get_json(cluster, "deployment", f"{release}-finex-workers-operator", "-n", namespace)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    args = [
        f"--liveness=http://127.0.0.1:{health_port}/healthz" if a.startswith("--liveness=") else a
        for a in container["args"]
    ]
    return [*container["command"], *args]


@pytest.mark.parametrize("scope", ["cluster-wide", "namespaced"])
def test_installed_operator_reconciles_a_pool_with_only_its_rbac(
    k8s_cluster: k8s.Cluster,
    k8s_namespace: str,
    release: str,
    redis_url: str,
    tmp_path: Path,
    scope: str,
) -> None:
    ns = k8s_namespace
    restrict(k8s_cluster, ns)
    # Namespaced is the default (the release's namespace); cluster-wide is the opt-in.
    watch = ["--set", "operator.clusterWide=true"] if scope == "cluster-wide" else []
    # debug: the log then shows every API request the operator makes, with its status code.
    helm_install(k8s_cluster, release, ns, "--set", "operator.logLevel=debug", *watch)
    k8s_cluster.kubectl(
        "create", "secret", "generic", "finex-redis", "-n", ns, f"--from-literal=url={redis_url}"
    )
    k8s_cluster.kubectl(
        "create",
        "secret",
        "generic",
        "finex-postgres",
        "-n",
        ns,
        "--from-literal=url=postgresql://finex:pg-password-never-shown@127.0.0.1:1/finex",
    )
    # A second pool whose Redis cannot be reached: its error must not carry the password.
    k8s_cluster.kubectl(
        "create",
        "secret",
        "generic",
        "broken-redis",
        "-n",
        ns,
        "--from-literal=url=redis://:redis-password-never-shown@127.0.0.1:1/0",
    )

    port = k8s.free_port()
    argv = installed_operator_argv(k8s_cluster, ns, release, port)
    assert argv[:3] == ["kopf", "run", "--module=finex_operator.handlers"]
    kubeconfig = k8s_cluster.kubeconfig_for_service_account(ns, operator_sa(release))
    operator = HostOperator(argv, kubeconfig, tmp_path / "operator.log", port)
    try:
        wait_for("the operator's /healthz", operator.healthy, 60)
        # The sample pool, applied by the chart itself.
        helm_install(
            k8s_cluster,
            release,
            ns,
            "--reuse-values",
            "--set",
            "samplePool.enabled=true",
            verb="upgrade",
        )
        broken = {
            "apiVersion": "finex.io/v1alpha1",
            "kind": "FinexWorkerPool",
            "metadata": {"name": "broken", "namespace": ns},
            "spec": {
                "image": "finex-workers:0.1.0",
                "queues": [{"name": "growth", "replicas": 1, "concurrency": 1}],
                "redis": {"urlSecretRef": {"name": "broken-redis", "key": "url"}},
                "database": {
                    "urlSecretRef": {"name": "finex-postgres", "key": "url"},
                    "connectionBudget": 5,
                },
            },
        }
        k8s_cluster.kubectl("apply", "-f", "-", input=json.dumps(broken))

        def deployments() -> list[dict[str, Any]]:
            items = get_json(k8s_cluster, "deployments", "-n", ns, "-l", "finex.io/pool=finex")[
                "items"
            ]
            return items if len(items) == 3 else []

        deps = wait_for("the sample pool's three Deployments", deployments, 60)
        assert sorted(d["metadata"]["name"] for d in deps) == [
            "finex-growth",
            "finex-matrix",
            "finex-probability",
        ]
        for dep in deps:
            assert dep["metadata"]["ownerReferences"][0]["name"] == "finex"
            pod = dep["spec"]["template"]["spec"]
            assert pod["automountServiceAccountToken"] is False
        # Worker pods are admitted under "restricted" and become Ready on kwok.
        wait_for(
            "the worker pods Ready",
            lambda: all(
                (d.get("status", {}).get("readyReplicas") or 0) == 1
                for d in get_json(
                    k8s_cluster, "deployments", "-n", ns, "-l", "finex.io/pool=finex"
                )["items"]
            ),
            90,
        )

        def ready_status() -> dict[str, Any] | None:
            status = get_json(k8s_cluster, "fwp", "finex", "-n", ns).get("status") or {}
            conditions = {c["type"]: c for c in status.get("conditions", [])}
            return status if "Ready" in conditions and status.get("observedGeneration") else None

        status = wait_for("the pool's status", ready_status, 60)
        assert {q["name"] for q in status["queues"]} == {"matrix", "growth", "probability"}
        wait_for(
            "the broken pool's status",
            lambda: (get_json(k8s_cluster, "fwp", "broken", "-n", ns).get("status") or {}).get(
                "conditions"
            ),
            60,
        )
        printed = k8s_cluster.kubectl("get", "fwp", "-n", ns).stdout
        assert "finex" in printed
        assert "READY" in printed

        # Credentials stay out of status, Events and logs.
        everything = (
            k8s_cluster.kubectl("get", "fwp", "-n", ns, "-o", "yaml").stdout
            + k8s_cluster.kubectl("get", "events", "-n", ns, "-o", "yaml").stdout
            + operator.output()
        )
        for secret in ("redis-password-never-shown", "pg-password-never-shown", redis_url):
            assert secret not in everything

        # Delete the pools while the operator runs, so it releases its finalizer.
        k8s_cluster.kubectl("delete", "fwp", "--all", "-n", ns, "--timeout=60s")
    finally:
        operator.stop()
        print(operator.output()[-20000:])  # pytest shows it when the test fails
    log = operator.output()
    assert "Forbidden" not in log, log[-4000:]
    assert "Not enough permissions" not in log, log[-4000:]
    assert 'HTTP/1.1" 403' not in log, log[-4000:]
    assert 'HTTP/1.1" 200' in log  # the debug log does show the requests
