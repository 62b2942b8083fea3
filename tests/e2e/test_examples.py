"""Every file in examples/ is accepted by the real apiserver (server-side dry-run, strict).

The pools are checked against the CRD, and the Deployments the operator would build from them
against the apiserver too. The ScaledObject is checked against KEDA's published CRD (the one
tests/e2e/test_autoscale.py installs, from hack/k8s-versions.env's KEDA_VERSION). The
kube-prometheus-stack values belong to a chart that is not installed here: parsed only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from finex_operator import builders
from finex_operator.spec import parse_spec
from tests.support import cluster as k8s
from tests.support.k8s_fixtures import Kubectl
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CRD = ROOT / "crds" / "finexworkerpools.yaml"
MANIFESTS = sorted(p.name for p in EXAMPLES.glob("*.yaml") if not p.name.endswith("values.yaml"))


@pytest.fixture(scope="module")
def crds(k8s_cluster: k8s.Cluster) -> None:
    scaledobjects = k8s_cluster.tools.root / "keda" / "keda.sh_scaledobjects.yaml"
    assert scaledobjects.is_file(), "run hack/build-k8s-tools.sh (KEDA_VERSION) first"
    for crd in (CRD, scaledobjects):
        k8s_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        name = yaml.safe_load(crd.read_text())["metadata"]["name"]
        # Not `kubectl wait` at once: right after the apply the CRD may have no conditions yet.
        wait_for(
            f"{name} Established",
            lambda name=name: (
                k8s_cluster.kubectl(
                    "get",
                    "crd",
                    name,
                    "-o",
                    'jsonpath={.status.conditions[?(@.type=="Established")].status}',
                ).stdout
                == "True"
            ),
            timeout=60,
        )


def test_the_examples_are_the_ones_the_docs_name() -> None:
    assert MANIFESTS == [
        "hpa-external.yaml",
        "keda-scaledobject.yaml",
        "pool-full.yaml",
        "pool-minimal.yaml",
    ]


@pytest.mark.parametrize("name", MANIFESTS)
def test_each_example_is_accepted_by_the_apiserver(crds: None, kubectl: Kubectl, name: str) -> None:
    path = EXAMPLES / name
    result = kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", str(path), check=False
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body = yaml.safe_load(path.read_text())
    if body["kind"] != "FinexWorkerPool":
        return
    stored = json.loads(kubectl("create", "--dry-run=server", "-o", "json", "-f", str(path)).stdout)
    spec = parse_spec(stored["spec"])
    for queue in spec.queue_names:
        dep = builders.deployment(
            pool=stored["metadata"]["name"], uid="00000000-0000-0000-0000-000000000000",
            spec=spec, queue=queue, replicas=1, grace_margin=30,
        )  # fmt: skip
        dep["metadata"]["ownerReferences"] = []  # the owner does not exist in a dry run
        result = kubectl(
            "apply", "--dry-run=server", "--validate=strict", "-f", "-",
            input=json.dumps(dep), check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr


def test_the_autoscaler_examples_target_the_full_pools_deployment() -> None:
    pool = yaml.safe_load((EXAMPLES / "pool-full.yaml").read_text())
    growth = next(q for q in pool["spec"]["queues"] if q["name"] == "growth")
    deployment = builders.deployment_name(pool["metadata"]["name"], "growth")
    keda = yaml.safe_load((EXAMPLES / "keda-scaledobject.yaml").read_text())
    hpa = yaml.safe_load((EXAMPLES / "hpa-external.yaml").read_text())
    assert keda["spec"]["scaleTargetRef"]["name"] == deployment
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment
    # Never above the ceiling the connection budget was checked at.
    assert keda["spec"]["maxReplicaCount"] == growth["maxReplicas"]
    assert hpa["spec"]["maxReplicas"] == growth["maxReplicas"]


def test_the_kube_prometheus_stack_values_select_the_charts_monitors() -> None:
    values = yaml.safe_load((EXAMPLES / "kube-prometheus-stack-values.yaml").read_text())
    prometheus = values["prometheus"]["prometheusSpec"]
    for key in ("serviceMonitor", "podMonitor", "rule"):
        assert prometheus[f"{key}SelectorNilUsesHelmValues"] is False
    assert values["grafana"]["sidecar"]["dashboards"]["enabled"] is True
