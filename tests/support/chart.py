"""The finex-workers chart in tests: render it with the cached helm, and pick objects out.

    render(values={...}, release="r", namespace="finex") -> list of manifests (dicts)
    render_error(values={...})                           -> helm's stderr, for a refused value
    find(objects, kind, name=None)                       -> the objects of a kind (and name)
    adopt_crd(cluster, release, namespace)               -> hand an existing CRD (and its
                                                            quantity policy) to a release

helm runs from the toolchain that hack/build-k8s-tools.sh caches (find_tools() says to run
`make k8s-tools` when it is absent), with --kube-version set to the pinned Kubernetes version,
so the chart's kubeVersion constraint is checked as a real install would.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tests.support import cluster as k8s

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "finex-workers"
CRD_NAME = "finexworkerpools.finex.io"
QUANTITY_POLICY = "finexworkerpools-quantities.finex.io"
#: What templates/crds.yaml renders from crds/, all kept on uninstall (crds.keep).
KEPT_OBJECTS = (
    ("crd", CRD_NAME),
    ("validatingadmissionpolicy", QUANTITY_POLICY),
    ("validatingadmissionpolicybinding", QUANTITY_POLICY),
)


def _helm_template(
    values: dict[str, Any], release: str, namespace: str
) -> subprocess.CompletedProcess[str]:
    tools = k8s.find_tools()
    version = k8s.pinned_versions()["KUBERNETES_VERSION"]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        json.dump(values, f)  # JSON is YAML, and keeps types exact
        f.flush()
        return subprocess.run(
            [
                str(tools.path("helm")),
                "template",
                release,
                str(CHART),
                "--namespace",
                namespace,
                "--kube-version",
                version,
                "--values",
                f.name,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )


def render(
    values: dict[str, Any] | None = None, release: str = "r", namespace: str = "finex"
) -> list[dict[str, Any]]:
    """The chart's manifests for these values; fails the test with helm's message if refused."""
    proc = _helm_template(values or {}, release, namespace)
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def render_error(values: dict[str, Any], release: str = "r", namespace: str = "finex") -> str:
    """helm's error for values that must be refused; fails the test if helm accepts them."""
    proc = _helm_template(values, release, namespace)
    assert proc.returncode != 0, f"helm accepted values it should refuse: {values}"
    return proc.stderr


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Pod templates of every workload, by "<kind>/<name>"."""
    return {
        f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"]["spec"]
        for o in objects
        if o["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}
    }


def adopt_crd(cluster: k8s.Cluster, release: str, namespace: str) -> None:
    """Let `release` take over the CRD and its quantity policy that another release made.

    They are kept when their release goes away, and Helm refuses to install an object that
    belongs to no release or to another one. These are the labels and annotations Helm checks;
    docs/install.md tells users the same.
    """
    for kind, name in KEPT_OBJECTS:
        if cluster.kubectl("get", kind, name, check=False).returncode != 0:
            continue
        cluster.kubectl("label", "--overwrite", kind, name, "app.kubernetes.io/managed-by=Helm")
        cluster.kubectl(
            "annotate",
            "--overwrite",
            kind,
            name,
            f"meta.helm.sh/release-name={release}",
            f"meta.helm.sh/release-namespace={namespace}",
        )
