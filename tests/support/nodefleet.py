"""The product on the test cluster's real node, as users install it: shared by the node tier
(tests/node) and bench/node_fleet.py.

Redis and PostgreSQL run on this machine and listen, besides loopback, on the bridge's gateway
address (an interface the runner made), where the Pods reach them; this host reads them over
loopback. The chart is installed with the image `make image` built, into a namespace that
enforces the restricted Pod Security level, with its Secrets, as docs/install.md says.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
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


def start_services(gateway: str, workdir: Path) -> NodeServices:
    """Redis and PostgreSQL for the Pods, on loopback and on the bridge's gateway."""
    rds = localservices.start_redis(workdir / "node-redis", also_listen=gateway)
    pg = localservices.start_postgres(
        workdir / "node-pg",
        max_connections=200,
        fast_unsafe=True,
        also_listen=gateway,
        trust_network=realnode.POD_SUBNET,
    )
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    return NodeServices(rds, pg, gateway)


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


def install(cluster: k8s.Cluster, services: NodeServices) -> tuple[Fleet, float]:
    """helm install into a restricted namespace; returns the fleet and the seconds it took."""
    # Everything belongs on the real node, not on the cluster's fake kwok node.
    for node in cluster.kubectl("get", "nodes", "-o", "name").stdout.split():
        if node != f"node/{cluster.real_node_name}":
            cluster.kubectl("taint", "node", node.split("/", 1)[1], "finex.io/fake=true:NoSchedule")
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl(
        "label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted"
    )
    fleet = Fleet(cluster, services)
    fleet.kubectl(
        "create", "secret", "generic", "finex-redis",
        f"--from-literal=url={services.redis_url_for_pods}",
    )  # fmt: skip
    fleet.kubectl(
        "create", "secret", "generic", "finex-postgres",
        f"--from-literal=url={services.db_url_for_pods}",
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
    return fleet, time.monotonic() - started


def uninstall(fleet: Fleet) -> None:
    fleet.cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)
    fleet.cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def pool_body(fleet: Fleet, name: str, replicas: int = 1, concurrency: int = 2) -> dict[str, Any]:
    """A FinexWorkerPool of the three queues, running the image built here."""
    return {
        "apiVersion": "finex.io/v1alpha1",
        "kind": "FinexWorkerPool",
        "metadata": {"name": name},
        "spec": {
            "image": fleet.cluster.workers_image,
            "imagePullPolicy": "Never",
            "queues": [
                {"name": q, "replicas": replicas, "concurrency": concurrency}
                for q in ("matrix", "growth", "probability")
            ],
            "redis": {"urlSecretRef": {"name": "finex-redis", "key": "url"}},
            "database": {
                "urlSecretRef": {"name": "finex-postgres", "key": "url"},
                "connectionBudget": 3 * replicas * concurrency,
            },
            "jobTimeoutSeconds": 60,
            "drainTimeoutSeconds": 60,
        },
    }


def apply(fleet: Fleet, body: dict[str, Any]) -> None:
    fleet.kubectl("apply", "-f", "-", input=json.dumps(body))


def rss_bytes(cluster: k8s.Cluster, pod: dict[str, Any]) -> int:
    """Resident memory of every process of the Pod's container, from /proc on this host."""
    [status] = pod["status"]["containerStatuses"]
    cid = str(status["containerID"]).removeprefix("containerd://")
    out = cluster.ctr("task", "ps", cid).stdout.split("\n")[1:]
    total = 0
    for line in out:
        fields = line.split()
        if not fields or not fields[0].isdigit():
            continue
        try:
            status_text = Path(f"/proc/{fields[0]}/status").read_text()
        except OSError:
            continue
        for row in status_text.splitlines():
            if row.startswith("VmRSS:"):
                total += int(row.split()[1]) * 1024
    return total
