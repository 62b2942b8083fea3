"""Kubernetes reads and writes for one pool: the CR, its Deployments, Pods and Secret.

Plain functions over the official client. Everything here is a thin call; the decisions are in
the planner package.
"""

from __future__ import annotations

import base64
import json
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from finex_operator import builders
from finex_operator.planner import DELETION_COST_ANNOTATION, DeploymentView, PodView

MERGE_PATCH = "application/merge-patch+json"


class SecretError(RuntimeError):
    """The referenced Secret or key is missing or unreadable; the message says which."""


def get_pool(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The pool as stored now (not kopf's cached copy), or None if it is gone."""
    try:
        body = client.CustomObjectsApi(api).get_namespaced_custom_object(
            builders.GROUP, builders.VERSION, namespace, builders.PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return cast(dict[str, Any], body)


def deployments(api: client.ApiClient, namespace: str, pool: str) -> dict[str, DeploymentView]:
    """The pool's Deployments by queue."""
    found = client.AppsV1Api(api).list_namespaced_deployment(
        namespace, label_selector=f"{builders.POOL_LABEL}={pool}"
    )
    out = {}
    for dep in found.items:
        meta = dep.metadata or client.V1ObjectMeta()
        queue = (meta.labels or {}).get(builders.QUEUE_LABEL)
        if not queue:
            continue
        out[queue] = DeploymentView(
            replicas=int(dep.spec.replicas or 0),
            ready_replicas=int((dep.status and dep.status.ready_replicas) or 0),
            spec_hash=(meta.annotations or {}).get(builders.HASH_ANNOTATION, ""),
            current=int((dep.status and dep.status.observed_generation) or 0)
            >= int(meta.generation or 0),
        )
    return out


def pods(api: client.ApiClient, namespace: str, pool: str) -> dict[str, list[PodView]]:
    """The pool's Pods by queue, terminating ones included (a stop waits until they are gone)."""
    found = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"{builders.POOL_LABEL}={pool}"
    )
    out: dict[str, list[PodView]] = {}
    for pod in found.items:
        meta = pod.metadata or client.V1ObjectMeta()
        queue = (meta.labels or {}).get(builders.QUEUE_LABEL, "")
        cost = (meta.annotations or {}).get(DELETION_COST_ANNOTATION)
        deadline = meta.deletion_timestamp  # the end of its grace period
        view = PodView(str(meta.name), cost, deadline is not None, deadline)
        out.setdefault(queue, []).append(view)
    return out


def pod_counts(pods_by_queue: dict[str, list[PodView]]) -> dict[str, int]:
    """Pods per queue, terminating ones included."""
    return {q: len(views) for q, views in pods_by_queue.items()}


def set_deletion_cost(api: client.ApiClient, namespace: str, pod: str, cost: int) -> None:
    """Merge-patch one Pod's controller.kubernetes.io/pod-deletion-cost (needs `patch` on pods).

    A Pod gone meanwhile is fine: it is not there to be chosen.
    """
    body = {"metadata": {"annotations": {DELETION_COST_ANNOTATION: str(cost)}}}
    try:
        client.CoreV1Api(api).patch_namespaced_pod(pod, namespace, body)
    except ApiException as exc:
        if exc.status != 404:
            raise


def secret_value(api: client.ApiClient, namespace: str, name: str, key: str) -> str:
    """One key of a Secret, decoded. Needs `get` on secrets in the pool's namespace."""
    try:
        secret = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        raise SecretError(
            f"cannot read Secret {namespace}/{name}: {exc.status} {exc.reason}"
        ) from None
    data = secret.data or {}
    if key not in data:
        raise SecretError(f"Secret {namespace}/{name} has no key {key!r}")
    return base64.b64decode(data[key]).decode()


class ForeignDeploymentError(RuntimeError):
    """A Deployment of the expected name exists, and this pool is not its controller."""


def _controller(meta: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)


def _describe(ref: dict[str, Any] | None) -> str:
    if ref is None:
        return "no controller"
    return f"controller {ref.get('kind')} {ref.get('name')} (uid {ref.get('uid')})"


def apply_deployment(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> str:
    """Create the Deployment if absent, else replace it with the body. Returns what it did.

    Only a Deployment whose controller reference is this pool (the body's owner, by uid) is
    changed; any other raises ForeignDeploymentError and is left exactly as it is. The update is a
    replace at the resourceVersion read, not a merge patch: a field removed from the pool
    (a toleration, a Pod annotation) leaves the Deployment too. What others own survives:
    replicas when the body leaves them out (an HPA's), and the Deployment's other labels and
    annotations (the controller's revision).
    """
    apps = client.AppsV1Api(api)
    name = body["metadata"]["name"]
    owner = body["metadata"]["ownerReferences"][0]
    try:
        apps.create_namespaced_deployment(namespace, body)  # type: ignore[arg-type]
        return "created"
    except ApiException as exc:
        if exc.status != 409:
            raise
    found = apps.read_namespaced_deployment(name, namespace)
    current = cast(dict[str, Any], api.sanitize_for_serialization(found))  # type: ignore[no-untyped-call]
    meta = {k: v for k, v in current["metadata"].items() if k != "managedFields"}
    controller = _controller(meta)
    if controller is None or controller.get("uid") != owner["uid"]:
        raise ForeignDeploymentError(
            f"Deployment {name} exists with {_describe(controller)}, not this pool: the operator "
            f"leaves it alone; delete or rename it to let the pool create its own"
        )
    spec = dict(body["spec"])
    if "replicas" not in spec:
        spec["replicas"] = current["spec"].get("replicas")
    replacement = {
        **body,
        "metadata": {
            **meta,
            "labels": {**(meta.get("labels") or {}), **body["metadata"]["labels"]},
            "annotations": {**(meta.get("annotations") or {}), **body["metadata"]["annotations"]},
        },
        "spec": spec,
    }
    apps.replace_namespaced_deployment(name, namespace, replacement)  # type: ignore[arg-type]
    return "replaced"


def refusal(exc: ApiException, body: dict[str, Any]) -> str:
    """What the apiserver said when it refused a Deployment (a Status object's message)."""
    try:
        message = str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        message = str(exc.reason)
    return f"the apiserver refused Deployment {body['metadata']['name']}: {message}"[:1024]


def scale_deployment(api: client.ApiClient, namespace: str, name: str, replicas: int) -> None:
    """Merge-patch spec.replicas only (a removed queue's Deployment, on its way out)."""
    body = {"spec": {"replicas": replicas}}
    try:
        client.AppsV1Api(api).patch_namespaced_deployment(
            name, namespace, body, _content_type=MERGE_PATCH
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


def delete_deployment(api: client.ApiClient, namespace: str, name: str) -> None:
    """Delete a Deployment and, in the background, its ReplicaSets (needs `delete`). Gone: fine."""
    try:
        client.AppsV1Api(api).delete_namespaced_deployment(
            name, namespace, propagation_policy="Background"
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


def patch_status(
    api: client.ApiClient, namespace: str, name: str, resource_version: str, status: dict[str, Any]
) -> None:
    """Merge-patch .status, on the condition that the pool is still the version observed."""
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        builders.GROUP,
        builders.VERSION,
        namespace,
        builders.PLURAL,
        name,
        {"metadata": {"resourceVersion": resource_version}, "status": status},
        _content_type=MERGE_PATCH,
    )
