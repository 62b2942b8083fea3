"""Kubernetes objects the operator owns, built as plain dicts by pure functions.

One Deployment per queue, named <pool>-<queue>, owned by the pool. A hash of the built object
sits in an annotation, so "replace if different" is one string comparison.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from finex_operator.spec import PodTemplate, PoolSpec

GROUP = "finex.io"
VERSION = "v1alpha1"
PLURAL = "finexworkerpools"
KIND = "FinexWorkerPool"
POOL_LABEL = "finex.io/pool"
QUEUE_LABEL = "finex.io/queue"
HASH_ANNOTATION = "finex.io/spec-hash"
CONTAINER = "worker"


def deployment_name(pool: str, queue: str) -> str:
    """Deterministic child name: the same pool and queue always give the same Deployment."""
    return f"{pool}-{queue}"


def selector_labels(pool: str, queue: str) -> dict[str, str]:
    """The Deployment's selector. Selectors are immutable, so these two stay what they were."""
    return {POOL_LABEL: pool, QUEUE_LABEL: queue}


def labels(pool: str, queue: str) -> dict[str, str]:
    """The labels of a Deployment and its Pods: the selector's, and the recommended
    app.kubernetes.io ones (the pool is the instance). They sit beside the selector, not in it."""
    return {
        **selector_labels(pool, queue),
        "app.kubernetes.io/name": "finex-worker",
        "app.kubernetes.io/instance": pool,
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": "finex-workers",
        "app.kubernetes.io/managed-by": "finex-operator",
    }


def owner_reference(pool: str, uid: str) -> dict[str, Any]:
    """Makes the pool the controller of a child, so deleting the pool deletes it (GC)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": pool,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _secret_env(name: str, ref_name: str, ref_key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref_name, "key": ref_key}}}


def worker_env(spec: PoolSpec, queue: str) -> list[dict[str, Any]]:
    """The worker's environment: its queue's concurrency, policies, and Secret-backed URLs.

    The supervisor checks the concurrency of the queue it runs against FINEX_PG_CONNECTION_BUDGET,
    so the Pod's budget is its own share; the pool-wide budget is the CRD's CEL rule.
    """
    concurrency = spec.queue(queue).concurrency
    env: list[dict[str, Any]] = [
        _secret_env("REDIS_URL", spec.redis_url.name, spec.redis_url.key),
        _secret_env("DATABASE_URL", spec.database_url.name, spec.database_url.key),
        {"name": f"{queue.upper()}_WORKER_CONCURRENCY", "value": str(concurrency)},
    ]
    env += [
        {"name": "FINEX_PG_CONNECTION_BUDGET", "value": str(concurrency)},
        {"name": "FINEX_RETRY_MAX", "value": str(spec.retry_max)},
        {"name": "FINEX_MAX_CRASHES", "value": str(spec.max_crashes)},
        {"name": "FINEX_JOB_TIMEOUT", "value": str(spec.job_timeout_seconds)},
    ]
    if spec.retry_intervals:
        intervals = ",".join(str(i) for i in spec.retry_intervals)
        env.append({"name": "FINEX_RETRY_INTERVALS", "value": intervals})
    return env


def _security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


#: Where each worker Pod's supervisor serves its job metrics (`--metrics-port`).
WORKER_METRICS_PORT = 9102


def worker_command(queue: str) -> list[str]:
    """The worker container's command, in exec form."""
    return ["finex", "workers", "start", "--worker", queue, f"--metrics-port={WORKER_METRICS_PORT}"]


def _spread(
    constraints: tuple[dict[str, Any], ...], selector: dict[str, str]
) -> list[dict[str, Any]]:
    """Spread constraints; one without a labelSelector spreads the queue's own Pods (without
    one, Kubernetes would count no Pod at all and the constraint would do nothing)."""
    return [c if "labelSelector" in c else {**c, "labelSelector": {"matchLabels": dict(selector)}}
            for c in constraints]  # fmt: skip


def _merge_pod_template(
    pod: dict[str, Any], container: dict[str, Any], template: PodTemplate, selector: dict[str, str]
) -> None:
    """spec.podTemplate into the Pod spec and the worker container. The operator's own labels,
    env and /tmp volume stay as they are (the CRD refuses templates that would clash)."""
    t = copy.deepcopy(template)
    pod["automountServiceAccountToken"] = t.automount_service_account_token
    optional: dict[str, Any] = {
        "imagePullSecrets": [{"name": n} for n in t.image_pull_secrets],
        "serviceAccountName": t.service_account_name,
        "priorityClassName": t.priority_class_name,
        "nodeSelector": dict(t.node_selector),
        "tolerations": [dict(x) for x in t.tolerations],
        "affinity": dict(t.affinity) if t.affinity is not None else None,
        "topologySpreadConstraints": _spread(
            tuple(dict(x) for x in t.topology_spread_constraints), selector
        ),
    }
    pod.update({k: v for k, v in optional.items() if v})
    pod["volumes"] += [dict(v) for v in t.volumes]
    container["env"] += [dict(e) for e in t.env]
    if t.env_from:
        container["envFrom"] = [dict(e) for e in t.env_from]
    container["volumeMounts"] += [dict(m) for m in t.volume_mounts]


def deployment(
    *, pool: str, uid: str, spec: PoolSpec, queue: str, replicas: int | None, grace_margin: int
) -> dict[str, Any]:
    """The Deployment of one queue; replicas is decided by the planner (0 while stopping).

    replicas None leaves the field out of the body, so neither the create nor the merge patch
    touches it: an HPA or KEDA owns it (autoscale.mode External).
    """
    selector = selector_labels(pool, queue)
    all_labels = labels(pool, queue)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        # Exec form: the supervisor is PID 1 and gets the kubelet's SIGTERM (warm shutdown).
        # It serves the workers' job metrics (durations, outcomes) for a PodMonitor to scrape.
        "command": worker_command(queue),
        "ports": [{"name": "metrics", "containerPort": WORKER_METRICS_PORT, "protocol": "TCP"}],
        "env": worker_env(spec, queue),
        # Served by the supervisor's metrics child (observability.health): ready once a worker
        # of this Pod is live in Redis (registered, heartbeating, listening); alive while the
        # supervisor runs. A Redis outage makes the Pod unready, never restarts it.
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "metrics"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": "metrics"},
            "initialDelaySeconds": 10,
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": _security_context(),
        # RQ and the supervisor write only to /tmp; the root filesystem stays read-only.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
    }
    if spec.resources:
        container["resources"] = dict(spec.resources)
    template = spec.pod_template
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        # Covers the longest allowed job: a warm shutdown finishes it before the kubelet kills.
        "terminationGracePeriodSeconds": spec.job_timeout_seconds + grace_margin,
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    _merge_pod_template(pod, container, template, selector)
    pod_meta: dict[str, Any] = {"labels": {**template.labels, **all_labels}}
    if template.annotations:
        pod_meta["annotations"] = dict(template.annotations)
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(pool, queue),
            "labels": dict(all_labels),
            "ownerReferences": [owner_reference(pool, uid)],
        },
        "spec": {
            "selector": {"matchLabels": selector},
            # Never old and new Pods at once: the Deployment controller does not count a
            # terminating Pod (Kubernetes 1.35), which still holds its PostgreSQL connections
            # while it finishes its job, so even maxSurge 0 would exceed replicas x
            # concurrency. Recreate starts the new Pods once the old ones are gone: the
            # connection budget holds during a roll, at the price of a gap in which the
            # queue's jobs wait (none is lost).
            "strategy": {"type": "Recreate"},
            "template": {"metadata": pod_meta, "spec": pod},
        },
    }
    if replicas is not None:
        body["spec"]["replicas"] = replicas
    body["metadata"]["annotations"] = {HASH_ANNOTATION: spec_hash(body)}
    return body


def spec_hash(body: dict[str, Any]) -> str:
    """A short digest of what the operator sets on a Deployment (not of what the server adds)."""
    text = json.dumps({"labels": body["metadata"]["labels"], "spec": body["spec"]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
