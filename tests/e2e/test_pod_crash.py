"""The operator recovers at once the jobs of a pool Pod whose worker container died (issue 19).

kwok runs no container, so the death is what the kubelet would write: the Pod's status gets the
`worker` container's lastState.terminated (OOMKilled, exit code 137). The worker that held the
job runs on this host under the Pod's name (FINEX_WORKER_HOST) and is frozen (SIGSTOP), so its
pid stays alive and its heartbeat fresh for the 60 s TTL: only the Pod's report can tell the
operator it is dead, as on a real node where the sweep cannot see another host's pids.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime

import redis
from kubernetes import client

from finex_workers import control
from finex_workers.core.settings import Settings
from finex_workers.infra.redisconn import get_queue
from tests.e2e.test_operator import (  # noqa: F401 - fixtures
    Operator,
    apply,
    crd,
    events,
    operator,
    pool,
    secret,
    wait_ready,
)
from tests.support.fleet import probe
from tests.support.k8s_fixtures import Kubectl
from tests.support.waiting import wait_for


def test_an_oomkilled_worker_containers_job_is_recovered_at_once(
    operator: Operator,  # noqa: F811
    secret: str,  # noqa: F811
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_conn: redis.Redis,
    fleet_env: dict[str, str],
    start_fleet,
) -> None:
    settings = Settings.from_env(fleet_env)
    apply(kubectl, pool(maxCrashes=3))
    wait_ready(k8s_api, k8s_namespace)
    core = client.CoreV1Api(k8s_api)
    pods = wait_for(
        "a growth Pod with its container status",
        lambda: [
            p
            for p in core.list_namespaced_pod(
                k8s_namespace, label_selector="finex.io/pool=pool,finex.io/queue=growth"
            ).items
            if p.status.container_statuses
        ],
        timeout=60,
    )
    pod = pods[0]
    fleet = start_fleet(["growth"], FINEX_WORKER_HOST=pod.metadata.name, FINEX_WORKER_TTL="60")
    fleet.wait_ready(redis_conn)
    job_id = probe(redis_conn, settings, "growth", "oom", hold=60)
    wait_for("the job in flight", lambda: control.active_jobs(redis_conn, "growth"))
    fleet.signal_group(signal.SIGSTOP)  # frozen: alive to the sweep, for the whole TTL
    try:
        statuses = core.read_namespaced_pod_status(pod.metadata.name, k8s_namespace)
        body = client.ApiClient().sanitize_for_serialization(statuses.status.container_statuses)
        finished = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for c in body:
            if c["name"] == "worker":
                c["lastState"] = {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "OOMKilled",
                        "startedAt": finished,
                        "finishedAt": finished,
                        "containerID": "containerd://e2e-oom",
                    }
                }
                c["restartCount"] = int(c.get("restartCount") or 0) + 1
        reported = time.monotonic()
        core.patch_namespaced_pod_status(
            pod.metadata.name, k8s_namespace, {"status": {"containerStatuses": body}}
        )
        wait_for(
            "the operator to requeue the dead container's job",
            lambda: (
                job_id.encode() in redis_conn.lrange(get_queue("growth", redis_conn).key, 0, -1)
            ),
            timeout=20,
        )
        took = time.monotonic() - reported
        print(f"Pod status OOMKilled -> job requeued: {took:.2f}s")
        last = redis_conn.hget(f"rq:job:{job_id}", "finex_last_crash") or b""
        assert last.startswith(b"oom: worker container of Pod " + pod.metadata.name.encode()), last
        assert took < 5, took  # the heartbeat TTL is 60 s, the operator's sweep saw it alive
        wait_for(
            "the WorkerCrashRecovered Event",
            lambda: "WorkerCrashRecovered" in [r for r, _ in events(k8s_api, k8s_namespace)],
            timeout=10,
        )
    finally:
        fleet.signal_group(signal.SIGKILL)
