"""The node tier: the product as users run it, on the test cluster's real node.

`helm install` of the chart with the image `make image` built, a FinexWorkerPool whose worker Pods
run our image in containers, and the runbook's restart and faults against those containers. Redis
and PostgreSQL run on this machine and listen, besides loopback, on the bridge's gateway address
(an interface the runner made), where the Pods reach them; the tests read them over loopback.

    node_services  (session)  Redis and PostgreSQL for the Pods: .redis_url_for_pods, .db_url ...
    fleet          (session)  the chart installed once into a restricted namespace, with its
                              Secrets; .ns, .release, .kubectl(...)

Every test here is marked `node`. The cluster fixtures are tests/support/k8s_fixtures.py's.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

from finex_workers.dev import localservices
from tests.support import cluster as k8s
from tests.support import realnode
from tests.support.chart import adopt_crd

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "finex-workers"
NAMESPACE = "finex-node"
RELEASE = "finex"
DATABASE = "finex_node"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.node)


@dataclass
class NodeServices:
    redis: localservices.LocalService
    pg: localservices.LocalService
    gateway: str

    @property
    def redis_url(self) -> str:  # for this host
        return f"redis://127.0.0.1:{self.redis.port}/0"

    @property
    def redis_url_for_pods(self) -> str:
        return f"redis://{self.gateway}:{self.redis.port}/0"

    @property
    def db_url(self) -> str:  # for this host
        return f"postgresql://postgres@127.0.0.1:{self.pg.port}/{DATABASE}"

    @property
    def db_url_for_pods(self) -> str:
        return f"postgresql://postgres@{self.gateway}:{self.pg.port}/{DATABASE}"


@pytest.fixture(scope="session")
def node_services(real_node_cluster: k8s.Cluster, services_dir: Path) -> Iterator[NodeServices]:
    gateway = real_node_cluster.gateway_ip
    rds = localservices.start_redis(services_dir / "node-redis", also_listen=gateway)
    pg = localservices.start_postgres(
        services_dir / "node-pg",
        max_connections=200,
        fast_unsafe=True,
        also_listen=gateway,
        trust_network=realnode.POD_SUBNET,
    )
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    yield NodeServices(rds, pg, gateway)
    rds.stop()
    pg.stop()


@dataclass
class Fleet:
    cluster: k8s.Cluster
    services: NodeServices
    ns: str = NAMESPACE
    release: str = RELEASE

    def kubectl(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("--namespace", self.ns, *args, **kwargs)  # type: ignore[arg-type]

    def json(self, *args: str) -> dict:  # type: ignore[type-arg]
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.services.redis_url)

    def db(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.services.db_url, autocommit=True)


@pytest.fixture(scope="session")
def fleet(real_node_cluster: k8s.Cluster, node_services: NodeServices) -> Iterator[Fleet]:
    """The chart, installed as docs/install.md says, with the image built here."""
    cluster = real_node_cluster
    # Everything this tier runs belongs on the real node, not on the cluster's fake kwok node.
    for node in cluster.kubectl("get", "nodes", "-o", "name").stdout.split():
        if node != f"node/{cluster.real_node_name}":
            cluster.kubectl("taint", "node", node.split("/", 1)[1], "finex.io/fake=true:NoSchedule")
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl(
        "label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted"
    )
    fleet = Fleet(cluster, node_services)
    fleet.kubectl(
        "create", "secret", "generic", "finex-redis",
        f"--from-literal=url={node_services.redis_url_for_pods}",
    )  # fmt: skip
    fleet.kubectl(
        "create", "secret", "generic", "finex-postgres",
        f"--from-literal=url={node_services.db_url_for_pods}",
    )  # fmt: skip
    adopt_crd(cluster, RELEASE, NAMESPACE)
    host, port = cluster.pod_apiserver
    repository, tag = cluster.workers_image.split(":")
    started = time.monotonic()
    cluster.helm(
        "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--wait", "--timeout", "300s",
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never", "--set", "migrations.enabled=true",
        # No kube-proxy here: the operator reaches the apiserver through the runner's relay.
        "--set", "operator.env[0].name=KUBERNETES_SERVICE_HOST",
        "--set", f"operator.env[0].value={host}",
        "--set", "operator.env[1].name=KUBERNETES_SERVICE_PORT",
        "--set-string", f"operator.env[1].value={port}",
    )  # fmt: skip
    print(f"\nhelm install on the real node: {time.monotonic() - started:.1f}s")
    yield fleet
    cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def migrated(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass('finex_schema_migrations') IS NOT NULL").fetchone()
        return bool(row and row[0])
