"""Kubernetes fixtures shared by the e2e tier (tests/e2e) and the node tier (tests/node).

A plugin (registered in tests/conftest.py), not a conftest of either tier, so that one session
has one control plane of each kind however many tiers run: one real node per machine.

    k8s_cluster    (session)  tests.support.cluster.Cluster: .kubeconfig, .server, .kubectl(...),
                              .kubeconfig_for_service_account(ns, name), .kubeconfig_for_user(...)
    k8s_namespace  (function) name of a new namespace (default ServiceAccount ready); deleted after
    k8s_api        (function) kubernetes.client.ApiClient as the cluster admin
    kubectl        (function) run kubectl as admin (or kubeconfig=...), -n <k8s_namespace> preset

    real_node_cluster  (session)  a second control plane with a real node (containerd + kubelet
                                  running the project's image) and one kwok node; its own start,
                                  shared by every real-node test
    node_namespace     (function) a fresh namespace in real_node_cluster
    node_kubectl       (function) kubectl against real_node_cluster, -n <node_namespace> preset

Missing binaries fail the session with "run `make k8s-tools`", missing images with "run
`make image`"; nothing is skipped.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from tests.support import cluster as k8s
from tests.support import realnode

_ns_counter = itertools.count()

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def require_tools(real_node: bool = False) -> None:
    """Fail (never skip) with the make target that builds what is missing."""
    missing: str | None = None
    try:
        k8s.find_tools(real_node=real_node)
        if real_node:
            realnode.require_host_tools()
            realnode.image_tars()
    except (k8s.ToolsMissingError, realnode.RealNodeError) as exc:
        missing = str(exc)
    if missing:  # outside the except block, so the report is just the message
        pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[k8s.Cluster]:
    require_tools()
    cluster = k8s.start_cluster(nodes=2)
    print(f"\nlocal control plane ready in {cluster.startup_seconds:.1f}s at {cluster.server}")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def real_node_cluster() -> Iterator[k8s.Cluster]:
    require_tools(real_node=True)
    cluster = k8s.start_cluster(nodes=1, real_node=True)
    print(
        f"\ncontrol plane with a real node ready in {cluster.startup_seconds:.1f}s "
        f"(the node's share {cluster.node_startup_seconds:.1f}s) at {cluster.server}"
    )
    yield cluster
    cluster.stop()


def fresh_namespace(cluster: k8s.Cluster, request: pytest.FixtureRequest) -> str:
    """Create a namespace named after the test, once its default ServiceAccount exists."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"t{os.getpid() % 10000}-{next(_ns_counter)}-{base}"[:63].rstrip("-")
    cluster.kubectl("create", "namespace", name)
    # Pods are refused until the ServiceAccount controller made the default ServiceAccount.
    deadline = time.monotonic() + 30
    while cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"no default ServiceAccount in namespace {name}"
        time.sleep(0.2)
    return name


@pytest.fixture
def k8s_namespace(k8s_cluster: k8s.Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = fresh_namespace(k8s_cluster, request)
    yield name
    k8s_cluster.kubectl(
        "delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False
    )


@pytest.fixture
def node_namespace(real_node_cluster: k8s.Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = fresh_namespace(real_node_cluster, request)
    yield name
    real_node_cluster.kubectl(
        "delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False
    )


@pytest.fixture
def node_kubectl(real_node_cluster: k8s.Cluster, node_namespace: str) -> Kubectl:
    """Like kubectl, against the real-node cluster in node_namespace."""

    def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return real_node_cluster.kubectl("--namespace", node_namespace, *args, **kwargs)  # type: ignore[arg-type]

    return run


@pytest.fixture
def k8s_api(k8s_cluster: k8s.Cluster) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(k8s_cluster.kubeconfig))
    yield api
    api.close()


@pytest.fixture
def kubectl(k8s_cluster: k8s.Cluster, k8s_namespace: str) -> Kubectl:
    """kubectl("get", "pods", kubeconfig=None, input=None, check=True) in the test's namespace."""

    def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return k8s_cluster.kubectl("--namespace", k8s_namespace, *args, **kwargs)  # type: ignore[arg-type]

    return run


def wait_established(cluster: k8s.Cluster, crd_file: Path, timeout: float = 60) -> None:
    """Wait until the CRD of crd_file is Established. Not `kubectl wait` at once: right after an
    apply a big CRD may have no conditions yet, and kubectl wait then fails instead of waiting."""
    from tests.support.waiting import wait_for

    name = yaml.safe_load(crd_file.read_text())["metadata"]["name"]
    jsonpath = 'jsonpath={.status.conditions[?(@.type=="Established")].status}'
    wait_for(
        f"CRD {name} Established",
        lambda: cluster.kubectl("get", "crd", name, "-o", jsonpath, check=False).stdout == "True",
        timeout,
    )
