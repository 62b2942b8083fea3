"""Fixtures for the e2e tier: one real control plane per session, a fresh namespace per test.

    k8s_cluster    (session)  tests.support.cluster.Cluster: .kubeconfig, .server, .kubectl(...),
                              .kubeconfig_for_service_account(ns, name), .kubeconfig_for_user(...)
    k8s_namespace  (function) name of a new namespace (default ServiceAccount ready); deleted after
    k8s_api        (function) kubernetes.client.ApiClient as the cluster admin
    kubectl        (function) run kubectl as admin (or kubeconfig=...), -n <k8s_namespace> preset

Every test in tests/e2e is marked `e2e`. Missing binaries fail the session with "run
`make k8s-tools`"; nothing is skipped.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.support import cluster as k8s

_ns_counter = itertools.count()

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[k8s.Cluster]:
    missing: str | None = None
    try:
        k8s.find_tools()
    except k8s.ToolsMissingError as exc:
        missing = str(exc)
    if missing:  # outside the except block, so the report is just the message
        pytest.fail(missing, pytrace=False)
    cluster = k8s.start_cluster(nodes=2)
    print(f"\nlocal control plane ready in {cluster.startup_seconds:.1f}s at {cluster.server}")
    yield cluster
    cluster.stop()


@pytest.fixture
def k8s_namespace(k8s_cluster: k8s.Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"t{os.getpid() % 10000}-{next(_ns_counter)}-{base}"[:63].rstrip("-")
    k8s_cluster.kubectl("create", "namespace", name)
    # Pods are refused until the ServiceAccount controller made the default ServiceAccount.
    deadline = time.monotonic() + 30
    while k8s_cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"no default ServiceAccount in namespace {name}"
        time.sleep(0.2)
    yield name
    k8s_cluster.kubectl(
        "delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False
    )


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
