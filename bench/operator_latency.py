"""Operator latency: a pool change applied with kubectl, until its Deployment follows.

    .venv/bin/python bench/operator_latency.py [--rounds 10]

Starts its own control plane (the one the e2e tests use, built by `make k8s-tools`), a
redis-server on a free loopback port and the operator (`python -m finex_operator --standalone
--namespace bench`) as a subprocess. Then, --rounds times each, alternating:

1. **operator**: `kubectl apply` of the pool with a new growth concurrency, then poll the
   `pool-growth` Deployment every 10 ms until its replicas and GROWTH_WORKER_CONCURRENCY match;
2. **baseline**: `kubectl apply` of the same kind of change straight to a plain Deployment (what
   you would do with no operator), then poll it the same way until the apiserver returns it.

Both figures include kubectl's own start-up and round trip. Prints the median and worst of each,
the ratio of the medians, and the operator's share (its median minus the baseline's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config

from finex_workers.dev import localservices

ROOT = Path(__file__).resolve().parent.parent
CRD = ROOT / "crds" / "finexworkerpools.yaml"
NAMESPACE = "bench"
POLL_SECONDS = 0.01


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pool(growth_concurrency: int, growth_replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "finex.io/v1alpha1",
        "kind": "FinexWorkerPool",
        "metadata": {"name": "pool", "namespace": NAMESPACE},
        "spec": {
            "image": "registry.invalid/finex-workers:1",
            "queues": [
                {"name": "matrix", "replicas": 1, "concurrency": 1},
                {"name": "growth", "replicas": growth_replicas, "concurrency": growth_concurrency},
                {"name": "probability", "replicas": 1, "concurrency": 1},
            ],
            "redis": {"urlSecretRef": {"name": "finex-urls", "key": "redis-url"}},
            "database": {
                "urlSecretRef": {"name": "finex-urls", "key": "database-url"},
                "connectionBudget": 40,
            },
        },
    }


def plain_deployment(concurrency: int, replicas: int) -> dict[str, Any]:
    labels = {"app": "plain"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "plain", "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "image": "registry.invalid/finex-workers:1",
                            "env": [
                                {"name": "GROWTH_WORKER_CONCURRENCY", "value": str(concurrency)}
                            ],
                        }
                    ]
                },
            },
        },
    }


def follows(
    apps: client.AppsV1Api, name: str, concurrency: int, replicas: int
) -> Callable[[], bool]:
    def check() -> bool:
        try:
            dep = apps.read_namespaced_deployment(name, NAMESPACE)
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env or []}
        return bool(
            dep.spec.replicas == replicas
            and env.get("GROWTH_WORKER_CONCURRENCY") == str(concurrency)
        )

    return check


def timed_apply(
    kubectl: Callable[..., Any], body: dict[str, Any], done: Callable[[], bool]
) -> float:
    started = time.monotonic()
    kubectl("apply", "-f", "-", input=json.dumps(body))
    deadline = started + 60
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"{body['metadata']['name']} did not follow within 60 s")
        time.sleep(POLL_SECONDS)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="changes timed per side")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from tests.support import cluster as k8s  # the e2e control-plane runner

    work = Path(tempfile.mkdtemp(prefix="finex-bench-operator-"))
    log("starting the control plane ...")
    cluster = k8s.start_cluster()
    redis = localservices.start_redis(work / "redis")
    operator: subprocess.Popen[bytes] | None = None
    try:
        log(f"control plane healthy in {cluster.startup_seconds:.1f}s; operator starting")
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.kubectl("apply", "-f", str(CRD))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRD))
        cluster.kubectl(
            "create", "secret", "generic", "finex-urls", "-n", NAMESPACE,
            f"--from-literal=redis-url={redis.url}",
            "--from-literal=database-url=postgresql://unused@127.0.0.1:1/unused",
        )  # fmt: skip
        with (work / "operator.log").open("wb") as out:
            operator = subprocess.Popen(
                [sys.executable, "-m", "finex_operator", "--standalone", "--namespace", NAMESPACE],
                env={
                    **cluster.env(),
                    "PYTHONPATH": os.pathsep.join(
                        [str(ROOT / "operator"), str(ROOT / "workers"), str(ROOT)]
                    ),
                },
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        apps = client.AppsV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))

        def kubectl(*argv: str, input: str) -> None:
            cluster.kubectl(*argv, input=input)

        # First objects (creation is not what is timed), then the timed changes.
        timed_apply(kubectl, pool(1, 1), follows(apps, "pool-growth", 1, 1))
        timed_apply(kubectl, plain_deployment(1, 1), follows(apps, "plain", 1, 1))
        ours, base = [], []
        for n in range(args.rounds):
            concurrency, replicas = 2 + n % 8, 1 + n % 3
            ours.append(
                timed_apply(
                    kubectl,
                    pool(concurrency, replicas),
                    follows(apps, "pool-growth", concurrency, replicas),
                )
            )
            base.append(
                timed_apply(
                    kubectl,
                    plain_deployment(concurrency, replicas),
                    follows(apps, "plain", concurrency, replicas),
                )
            )
            log(f"round {n + 1}/{args.rounds}: operator {ours[-1]:.3f}s, plain {base[-1]:.3f}s")
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(20)
        cluster.stop()
        redis.stop()

    m_ours, m_base = statistics.median(ours), statistics.median(base)
    print(f"\n{'kubectl apply -> Deployment follows':<40} {'median':>8} {'worst':>8}")
    print(f"{'pool change, through the operator':<40} {m_ours:>7.3f}s {max(ours):>7.3f}s")
    print(f"{'plain Deployment change (baseline)':<40} {m_base:>7.3f}s {max(base):>7.3f}s")
    print(f"ratio of medians: {m_ours / m_base:.2f}x; the operator's share: {m_ours - m_base:.3f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
