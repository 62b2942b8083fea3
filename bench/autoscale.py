"""Autoscaling, measured: reaction to a demand crossing, and jobs interrupted in a scale-in storm.

    .venv/bin/python bench/autoscale.py [--rounds 5] [--storms 5]

Starts the e2e control plane (kwok nodes), a redis-server and the operator, like
bench/operator_latency.py. kwok's Pods run nothing, so a "kubelet" thread here starts one real
worker process per Pod, named after it (FINEX_WORKER_HOST), and stops it when its Pod goes:
SIGTERM (warm shutdown), then SIGKILL after GRACE_SECONDS. The storm's jobs run longer than that
grace, as long jobs do next to a short grace period, so a job running on a deleted Pod is lost:
that is an interrupted job.

1. **reaction**: a queue at 1 replica; JOBS jobs are enqueued at once (demand crosses
   jobsPerReplica=1). Timed until the Deployment's spec.replicas is patched, and until its Pods
   are Ready. Ours: the operator (1 s reconcile). Baseline, measured in the same run: an
   HPA-like loop at KEDA's documented defaults (a 30 s polling interval feeding a 15 s HPA
   sync), reading the same Redis and scaling a plain Deployment.
2. **storm**: 8 -> 1 -> 8, --storms times, with one job always in flight; each scale-in
   comes 12 s after the Pods are up, so the job in flight runs on any of them (usually a new
   one). Ours: the operator
   (autoscale min = max, patched) marks the Pods with pod-deletion-cost before scaling in.
   Baseline: the operator stopped, the costs removed, and `kubectl scale` of the same
   Deployment, which the ReplicaSet resolves by its own rules.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis as redis_lib
from kubernetes import client, config

from finex_workers.dev import localservices

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CRD = ROOT / "crds" / "finexworkerpools.yaml"
NS = "bench"
GRACE_SECONDS = 3.0
STORM_JOB_SECONDS = 8.0
JOBS = 3
KEDA_POLL_SECONDS = 30.0
HPA_SYNC_SECONDS = 15.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pool_body(autoscale: dict[str, Any], max_replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "finex.io/v1alpha1",
        "kind": "FinexWorkerPool",
        "metadata": {"name": "pool", "namespace": NS},
        "spec": {
            "image": "registry.invalid/finex-workers:1",
            "queues": [
                {
                    "name": "growth",
                    "concurrency": 1,
                    "maxReplicas": max_replicas,
                    "autoscale": autoscale,
                }
            ],
            "redis": {"urlSecretRef": {"name": "finex-urls", "key": "redis-url"}},
            "database": {
                "urlSecretRef": {"name": "finex-urls", "key": "database-url"},
                "connectionBudget": 40,
            },
            "jobTimeoutSeconds": 60,
        },
    }


def plain_deployment(replicas: int) -> dict[str, Any]:
    labels = {"app": "plain"}
    container = {"name": "worker", "image": "registry.invalid/finex-workers:1"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "plain", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


class Kubelet:
    """Plays the kubelet for the pool's kwok Pods: one worker process per Pod, stopped with it."""

    def __init__(self, core: client.CoreV1Api, conn: redis_lib.Redis, env: dict[str, str]):
        from tests.support.fleet import Fleet

        self.core, self.conn, self.env, self.fleet_type = core, conn, env, Fleet
        self.fleets: dict[str, Any] = {}
        self.interrupted: list[str] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _pods(self) -> set[str]:
        found = self.core.list_namespaced_pod(NS, label_selector="finex.io/queue=growth").items
        return {p.metadata.name for p in found if p.metadata.deletion_timestamp is None}

    def _loop(self) -> None:
        while not self.stopping:
            pods = self._pods()
            for name in pods - set(self.fleets):
                self.fleets[name] = self.fleet_type(
                    ["growth"], {**self.env, "FINEX_WORKER_HOST": name}
                )
            for name in set(self.fleets) - pods:
                threading.Thread(target=self._stop, args=(self.fleets.pop(name), name)).start()
            time.sleep(0.1)

    def _stop(self, fleet: Any, pod: str) -> None:
        fleet.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            fleet.proc.wait(GRACE_SECONDS)
        if fleet.proc.poll() is None:
            busy = [job for p, job in busy_pods(self.conn).items() if p == pod]
            self.interrupted += busy
            fleet.signal_group(signal.SIGKILL)
            fleet.proc.wait()
        fleet.close()

    def close(self) -> None:
        self.stopping = True
        self.thread.join()
        for fleet in self.fleets.values():
            fleet.close()


def busy_pods(conn: redis_lib.Redis) -> dict[str, str]:
    from finex_operator.planner import pod_of_worker
    from finex_workers.infra import rqworkers

    return {
        str(pod_of_worker(w.name, "growth")): str(w.current_job)
        for w in rqworkers.registered_workers(conn, "growth")
        if w.alive and w.current_job
    }


def enqueue_sleep(conn: redis_lib.Redis, queue: str, seconds: float, n: int = 1) -> None:
    from rq import Queue

    q = Queue(queue, connection=conn)
    for _ in range(n):
        q.enqueue("time.sleep", seconds, job_timeout=120, result_ttl=60)


def wait(what: str, check: Any, timeout: float = 120, every: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(every)
    return value


def scale_of(apps: client.AppsV1Api, name: str) -> tuple[int, int]:
    try:
        dep = apps.read_namespaced_deployment(name, NS)
    except client.ApiException as exc:
        if exc.status == 404:
            return (0, 0)
        raise
    return (int(dep.spec.replicas or 0), int(dep.status.ready_replicas or 0))


def hpa_like_loop(conn: redis_lib.Redis, apps: client.AppsV1Api, stop: threading.Event) -> None:
    """KEDA's defaults as a loop: poll the demand every 30 s; the HPA syncs every 15 s."""
    from finex_workers import control

    metric = {"value": 0}

    def poll() -> None:
        while not stop.wait(0):
            metric["value"] = control.queue_state(conn, "matrix").demand
            stop.wait(KEDA_POLL_SECONDS)

    threading.Thread(target=poll, daemon=True).start()
    stop.wait(KEDA_POLL_SECONDS / 3)  # the two clocks are not in phase
    while not stop.is_set():
        want = max(1, min(8, math.ceil(metric["value"] / 1)))
        if scale_of(apps, "plain")[0] != want:
            apps.patch_namespaced_deployment_scale("plain", NS, {"spec": {"replicas": want}})
        stop.wait(HPA_SYNC_SECONDS)


def idle_at_one(conn: redis_lib.Redis, apps: client.AppsV1Api) -> bool:
    """The pool's queue back at 1 Ready Pod with nothing waiting or running."""
    return (
        scale_of(apps, "pool-growth") == (1, 1)
        and not conn.llen("rq:queue:growth")
        and not busy_pods(conn)
    )


def reaction(
    conn: redis_lib.Redis, apps: client.AppsV1Api, queue: str, dep: str
) -> tuple[float, float]:
    t0 = time.monotonic()
    enqueue_sleep(conn, queue, 3.0, JOBS)
    wait("the patch", lambda: scale_of(apps, dep)[0] >= JOBS)
    patched = time.monotonic() - t0
    wait("Ready Pods", lambda: scale_of(apps, dep)[1] >= JOBS)
    return patched, time.monotonic() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="reaction samples (ours)")
    parser.add_argument(
        "--baseline-rounds", type=int, default=3, help="reaction samples (HPA-like)"
    )
    parser.add_argument("--storms", type=int, default=5, help="8 -> 1 -> 8 cycles per side")
    args = parser.parse_args()
    from tests.support import cluster as k8s

    work = Path(tempfile.mkdtemp(prefix="finex-bench-autoscale-"))
    log("starting the control plane ...")
    cluster = k8s.start_cluster()
    rds = localservices.start_redis(work / "redis")
    conn = redis_lib.Redis.from_url(rds.url)
    operator: subprocess.Popen[bytes] | None = None
    kubelet: Kubelet | None = None
    env = {
        **os.environ,
        "REDIS_URL": rds.url,
        "DATABASE_URL": "postgresql://unused@127.0.0.1:1/unused",
        "GROWTH_WORKER_CONCURRENCY": "1",
        "FINEX_WORKER_TTL": "6",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT / "workers"), str(ROOT)]),
    }

    def start_operator() -> subprocess.Popen[bytes]:
        with (work / "operator.log").open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "finex_operator", "--standalone", "--namespace", NS],
                env={**cluster.env(), **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def apply(body: dict[str, Any]) -> None:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(body))

    results: dict[str, Any] = {}
    try:
        cluster.kubectl("create", "namespace", NS)
        cluster.kubectl("apply", "-f", str(CRD))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRD))
        cluster.kubectl(
            "create", "secret", "generic", "finex-urls", "-n", NS,
            f"--from-literal=redis-url={rds.url}",
            f"--from-literal=database-url={env['DATABASE_URL']}",
        )  # fmt: skip
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        operator = start_operator()
        auto = {"minReplicas": 1, "jobsPerReplica": 1, "scaleDownStabilizationSeconds": 0}
        apply(pool_body(auto, 8))
        wait("the pool's first Pod", lambda: scale_of(apps, "pool-growth") == (1, 1))
        kubelet = Kubelet(core, conn, env)

        # 1. reaction, ours: the kubelet's workers drain the jobs, and the queue goes back to 1.
        ours = []
        for n in range(args.rounds):
            wait("1 Pod and no demand", lambda: idle_at_one(conn, apps), 120, 0.2)
            time.sleep(1)
            ours.append(reaction(conn, apps, "growth", "pool-growth"))
            log(f"reaction ours {n + 1}: patched {ours[-1][0]:.2f}s, Ready {ours[-1][1]:.2f}s")
        # 1. reaction, baseline: the matrix queue has no workers, so its demand stays until reset.
        apply(plain_deployment(1))
        wait("plain Ready", lambda: scale_of(apps, "plain") == (1, 1))
        base = []
        for n in range(args.baseline_rounds):
            stop = threading.Event()
            loop = threading.Thread(target=hpa_like_loop, args=(conn, apps, stop), daemon=True)
            loop.start()
            time.sleep((n * 7.3) % 15)  # enqueue at varying phases of the two clocks
            base.append(reaction(conn, apps, "matrix", "plain"))
            stop.set()
            loop.join()
            conn.delete("rq:queue:matrix")
            apps.patch_namespaced_deployment_scale("plain", NS, {"spec": {"replicas": 1}})
            log(f"reaction HPA-like {n + 1}: patched {base[-1][0]:.2f}s, Ready {base[-1][1]:.2f}s")
        results["reaction"] = {"ours": ours, "hpa_like": base}

        # 2. storm, ours then baseline, one job always in flight.
        load_stop = threading.Event()

        def load() -> None:
            from finex_workers import control

            while not load_stop.wait(0.2):
                if control.queue_state(conn, "growth").demand == 0:
                    enqueue_sleep(conn, "growth", STORM_JOB_SECONDS)

        def at(n: int) -> bool:
            return scale_of(apps, "pool-growth") == (n, n) and len(kubelet.fleets) == n

        def storm(scale: Any) -> int:
            before = len(kubelet.interrupted)
            for n in range(args.storms):
                scale(8)
                wait("8 Pods", lambda: at(8), 120, 0.1)
                # Longer than a job: the next job goes to a worker that waited longer (Redis
                # serves blocked clients in order), a new Pod's, not always the oldest Pod's.
                time.sleep(STORM_JOB_SECONDS * 1.5)
                scale(1)
                wait("1 Pod", lambda: at(1), 120, 0.1)
                time.sleep(GRACE_SECONDS + 1)
                log(f"storm cycle {n + 1}: interrupted so far {len(kubelet.interrupted) - before}")
            return len(kubelet.interrupted) - before

        def ours_scale(n: int) -> None:
            apply(pool_body({**auto, "minReplicas": n}, n))

        def plain_scale(n: int) -> None:
            cluster.kubectl("scale", "-n", NS, "deployment", "pool-growth", f"--replicas={n}")

        ours_scale(8)
        threading.Thread(target=load, daemon=True).start()
        results["storm_ours"] = storm(ours_scale)
        operator.terminate()
        operator.wait(20)
        operator = None
        cluster.kubectl("annotate", "-n", NS, "pods", "--all",
                        "controller.kubernetes.io/pod-deletion-cost-")  # fmt: skip
        results["storm_plain"] = storm(plain_scale)
        load_stop.set()
    finally:
        if kubelet is not None:
            kubelet.close()
        if operator is not None:
            operator.terminate()
            operator.wait(20)
        cluster.stop()
        rds.stop()

    (o_patch, o_ready), (b_patch, b_ready) = (
        [statistics.median(x) for x in zip(*results["reaction"][k], strict=True)]
        for k in ("ours", "hpa_like")
    )
    worst_o = max(p for p, _ in results["reaction"]["ours"])
    print(f"\n{'demand crosses -> ':<42} {'patched':>9} {'Ready':>9}   (medians)")
    ours_line = f"{'operator (1 s reconcile)':<42} {o_patch:>8.2f}s {o_ready:>8.2f}s"
    print(f"{ours_line}   worst patch {worst_o:.2f}s")
    print(f"{'HPA-like loop, KEDA defaults 30 s + 15 s':<42} {b_patch:>8.2f}s {b_ready:>8.2f}s")
    print(
        f"storm 8->1->8 x{args.storms}, jobs {STORM_JOB_SECONDS:.0f}s, grace {GRACE_SECONDS:.0f}s:"
    )
    print(f"  interrupted jobs, operator (deletion costs): {results['storm_ours']}")
    print(f"  interrupted jobs, plain kubectl scale:       {results['storm_plain']}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
