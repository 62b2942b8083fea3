"""The node tier: the product as users run it, on the test cluster's real node.

`helm install` of the chart with the image `make image` built, a FinexWorkerPool whose worker Pods
run our image in containers, and the runbook's restart and faults against those containers.
tests/support/nodefleet.py says how the services and the install are set up.

    node_services  (session)  Redis and PostgreSQL for the Pods (and for this host, on loopback)
    fleet          (session)  the chart installed once into a restricted namespace

Every test here is marked `node`. The cluster fixtures are tests/support/k8s_fixtures.py's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support import cluster as k8s
from tests.support.nodefleet import Fleet, NodeServices, install, start_services, uninstall


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.node)


@pytest.fixture(scope="session")
def node_services(real_node_cluster: k8s.Cluster, services_dir: Path) -> Iterator[NodeServices]:
    services = start_services(real_node_cluster.gateway_ip, services_dir)
    yield services
    services.redis.stop()
    services.pg.stop()


@pytest.fixture(scope="session")
def fleet(real_node_cluster: k8s.Cluster, node_services: NodeServices) -> Iterator[Fleet]:
    """The chart, installed as docs/install.md says, with the image built here."""
    fleet, took = install(real_node_cluster, node_services)
    print(f"\nhelm install on the real node: {took:.1f}s")
    yield fleet
    uninstall(fleet)


def migrated(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass('finex_schema_migrations') IS NOT NULL").fetchone()
        return bool(row and row[0])
