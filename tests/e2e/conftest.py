"""The e2e tier: the operator, the chart and the cluster runner against a real kube-apiserver.

Its fixtures (k8s_cluster, k8s_namespace, k8s_api, kubectl, real_node_cluster, node_namespace,
node_kubectl) live in tests/support/k8s_fixtures.py, shared with the node tier. Every test here
is marked `e2e`.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)
    # A module that starts and stops a real node of its own (OWN_REAL_NODE = True) runs first:
    # one real node per machine, and the session's real_node_cluster lives until the end.
    items.sort(key=lambda item: not getattr(getattr(item, "module", None), "OWN_REAL_NODE", False))
