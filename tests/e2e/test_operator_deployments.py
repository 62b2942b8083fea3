"""The operator's Deployments on the real control plane: the Pod template, whose Deployment it
may change, and what it says about a URL it cannot use.

kwok runs the Pods, so "the Pod carries it" means the apiserver admitted a Pod with it (its
ServiceAccount and PriorityClass must exist); that it runs jobs is the node tier's business.
"""

from __future__ import annotations

import copy
import json
import re
import time
from typing import Any

import pytest
import redis
from kubernetes import client
from kubernetes import watch as kwatch

from tests.e2e import test_operator as base
from tests.e2e.test_operator import Operator, apply, condition, get_pool, pool
from tests.support.k8s_fixtures import Kubectl
from tests.support.pod_template import TEMPLATE
from tests.support.waiting import wait_for

# The operator's fixtures, shared with test_operator.py.
crd = base.crd
operator = base.operator
secret = base.secret


def deployment(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return api.sanitize_for_serialization(found)


def pool_events(api: client.ApiClient, namespace: str, reason: str | None = None) -> list[str]:
    items = client.CoreV1Api(api).list_namespaced_event(namespace).items
    return [
        e.message
        for e in items
        if e.involved_object.kind == "FinexWorkerPool" and reason in (None, e.reason)
    ]


@pytest.fixture
def template_objects(kubectl: Kubectl) -> None:
    """What admission wants to exist before it admits a Pod of TEMPLATE."""
    kubectl("create", "serviceaccount", TEMPLATE["serviceAccountName"])
    kubectl(
        "apply", "-f", "-",
        input=json.dumps({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": TEMPLATE["priorityClassName"]}, "value": 1000,
        }),
    )  # fmt: skip


def test_a_pool_template_reaches_its_deployments_and_a_removed_field_leaves_them(
    operator: Operator,
    secret: str,
    template_objects: None,
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
) -> None:
    body = pool(podTemplate=copy.deepcopy(TEMPLATE))
    body["spec"]["queues"] = [{"name": "matrix", "replicas": 2, "concurrency": 5}]
    apply(kubectl, body)
    dep = wait_for(
        "the matrix Deployment", lambda: deployment(k8s_api, k8s_namespace, "pool-matrix"), 30
    )
    template = dep["spec"]["template"]
    pod = template["spec"]
    (container,) = pod["containers"]
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["terminationGracePeriodSeconds"] >= body["spec"]["jobTimeoutSeconds"]
    assert template["metadata"]["labels"]["team"] == "risk"
    assert template["metadata"]["annotations"] == TEMPLATE["metadata"]["annotations"]
    assert pod["imagePullSecrets"] == TEMPLATE["imagePullSecrets"]
    assert pod["serviceAccountName"] == TEMPLATE["serviceAccountName"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["priorityClassName"] == TEMPLATE["priorityClassName"]
    assert pod["nodeSelector"] == TEMPLATE["nodeSelector"]
    assert pod["tolerations"] == TEMPLATE["tolerations"]
    assert pod["affinity"] == TEMPLATE["affinity"]
    assert pod["topologySpreadConstraints"][0]["labelSelector"] == {
        "matchLabels": {"finex.io/pool": "pool", "finex.io/queue": "matrix"}
    }
    assert {"name": "ca", "secret": {"secretName": "finex-ca", "defaultMode": 420}} in pod[
        "volumes"
    ]
    assert container["envFrom"] == TEMPLATE["envFrom"]
    assert {"name": "SSL_CERT_FILE", "value": "/etc/finex/ca/ca.crt"} in container["env"]
    assert {"name": "ca", "mountPath": "/etc/finex/ca", "readOnly": True} in container[
        "volumeMounts"
    ]

    # Admission let the Pods in: the ServiceAccount and PriorityClass resolved.
    pods = wait_for(
        "the matrix Pods",
        lambda: (
            (
                items := client.CoreV1Api(k8s_api)
                .list_namespaced_pod(k8s_namespace, label_selector="finex.io/queue=matrix")
                .items
            )
            and items
        ),
        30,
    )
    assert pods[0].spec.priority == 1000
    assert pods[0].metadata.annotations["vault.hashicorp.com/agent-inject"] == "true"

    # Fields removed from the pool leave the Deployment (a merge patch would have kept them).
    slimmer = copy.deepcopy(body)
    template_spec = slimmer["spec"]["podTemplate"]
    for field in ("tolerations", "nodeSelector", "affinity"):
        del template_spec[field]
    template_spec["metadata"] = {"labels": {"team": "risk"}}
    apply(kubectl, slimmer)

    def slimmed() -> bool:
        dep = deployment(k8s_api, k8s_namespace, "pool-matrix") or {}
        tpl = dep["spec"]["template"]
        return (
            not {"tolerations", "nodeSelector", "affinity"} & set(tpl["spec"])
            and "sidecar.istio.io/inject" not in tpl["metadata"]["labels"]
            and not tpl["metadata"].get("annotations")
        )

    wait_for("the removed fields to leave the Deployment", slimmed, timeout=30)
    assert (deployment(k8s_api, k8s_namespace, "pool-matrix") or {})["spec"]["replicas"] == 2


def test_a_foreign_deployment_of_the_same_name_is_left_alone(
    operator: Operator,
    secret: str,
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
) -> None:
    kubectl("create", "deployment", "pool-matrix", "--image=registry.invalid/someone-else:1")
    foreign = deployment(k8s_api, k8s_namespace, "pool-matrix")
    assert foreign is not None
    apply(kubectl, pool())
    wait_for(
        "the DeploymentNotOwned Warning",
        lambda: pool_events(k8s_api, k8s_namespace, "DeploymentNotOwned"),
        timeout=30,
    )
    # The pool's other queues got their Deployments; the foreign one is as it was.
    for q in ("growth", "probability"):
        wait_for(f"pool-{q}", lambda q=q: deployment(k8s_api, k8s_namespace, f"pool-{q}"), 30)
    # More rounds: a spec change the operator must carry to pool-growth, so it has also tried
    # pool-matrix again by then.
    changed = pool()
    changed["spec"]["queues"][1]["concurrency"] = 4
    apply(kubectl, changed)

    def growth_follows() -> bool:
        dep = deployment(k8s_api, k8s_namespace, "pool-growth") or {}
        env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
        return {"name": "GROWTH_WORKER_CONCURRENCY", "value": "4"} in env

    wait_for("pool-growth to follow the spec", growth_follows, timeout=30)
    now = deployment(k8s_api, k8s_namespace, "pool-matrix")
    assert now is not None
    assert now["metadata"].get("ownerReferences") is None
    assert now["metadata"]["labels"] == foreign["metadata"]["labels"]
    assert now["spec"]["template"] == foreign["spec"]["template"]
    assert now["metadata"]["generation"] == foreign["metadata"]["generation"]
    (message,) = pool_events(k8s_api, k8s_namespace, "DeploymentNotOwned")  # once, not per round
    assert "pool-matrix" in message
    assert "no controller" in message
    applied = pool_events(k8s_api, k8s_namespace, "DeploymentApplied")
    assert not [m for m in applied if m.startswith("pool-matrix:")], applied

    # Once it is gone, the pool creates its own.
    kubectl("delete", "deployment", "pool-matrix", "--wait=true")
    mine = wait_for(
        "the pool's own pool-matrix",
        lambda: (
            (d := deployment(k8s_api, k8s_namespace, "pool-matrix"))
            and d["metadata"].get("ownerReferences")
            and d
        ),
        timeout=30,
    )
    assert mine["metadata"]["ownerReferences"][0]["kind"] == "FinexWorkerPool"


PASSWORDS = ["Zq7x/Wv8y", "Kp3m@Rt6n", "Hj2b:Lf5c", "Qs4d%Gm1e", "Nz8w/Py2u@Bc4v:Dk6t%Ey3"]


def test_a_redis_url_is_never_echoed_in_status_or_events(
    operator: Operator,
    secret: str,
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    redis_url: str,
) -> None:
    """Passwords with '/', '@', ':' and '%': one mangles the URL's parse (the port error used to
    quote the password's first half), the others reach a Redis that refuses them."""
    where = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    literals = []
    for n, password in enumerate(PASSWORDS):
        url = f"redis://finexuser:{password}@{where['host']}:{where['port']}/0"
        literals.append(f"--from-literal=redis-url-{n}={url}")
    kubectl("create", "secret", "generic", "leaky", *literals)
    for n in range(len(PASSWORDS)):
        body = pool(f"leak-{n}")
        body["spec"]["redis"]["urlSecretRef"] = {"name": "leaky", "key": f"redis-url-{n}"}
        apply(kubectl, body)

    def degraded(n: int) -> dict[str, Any] | None:
        b = get_pool(k8s_api, k8s_namespace, f"leak-{n}")
        return b if condition(b, "Degraded") == "True" else None

    said = []
    for n in range(len(PASSWORDS)):
        said.append(
            json.dumps(wait_for(f"leak-{n} Degraded", lambda n=n: degraded(n), 30)["status"])
        )
    said += pool_events(k8s_api, k8s_namespace)
    text = "\n".join(said)
    print(text[:3000])
    for password in PASSWORDS:
        for piece in re.split(r"[/@:%]", password):
            assert piece not in text, f"{piece!r} of a password is in status or Events"
    assert "finexuser" not in text
    # Each pool still says what is wrong: the parse error, or the refused credentials.
    assert "it cannot be parsed as a URL" in text
    assert "the server refused its user name or password" in text


def test_an_image_change_never_runs_more_pods_than_replicas(
    operator: Operator,
    secret: str,
    kubectl: Kubectl,
    k8s_api: client.ApiClient,
    k8s_namespace: str,
) -> None:
    """The connection budget counts replicas x concurrency, and a Pod holds its connections
    until it is gone, terminating or not. So during a roll the Pods that exist at once (from the
    apiserver's watch: created, until deleted) never exceed the replicas. The default
    RollingUpdate (25% surge: 1 extra Pod of 3) would."""
    body = pool()
    body["spec"]["queues"] = [{"name": "matrix", "replicas": 3, "concurrency": 5}]
    apply(kubectl, body)
    wait_for(
        "3 Ready matrix Pods",
        lambda: (
            ((deployment(k8s_api, k8s_namespace, "pool-matrix") or {}).get("status") or {}).get(
                "readyReplicas"
            )
            == 3
        ),
        60,
    )
    core = client.CoreV1Api(k8s_api)
    listed = core.list_namespaced_pod(k8s_namespace, label_selector="finex.io/queue=matrix")
    alive = {p.metadata.name for p in listed.items}
    images: set[str] = set()
    peak = len(alive)
    body["spec"]["image"] = "registry.invalid/finex-workers:2"
    apply(kubectl, body)
    version = listed.metadata.resource_version
    deadline = time.monotonic() + 120
    # name -> (image, ready), from the watch alone, so the peak and the end are the same view.
    seen = {p.metadata.name: (p.spec.containers[0].image, True) for p in listed.items}

    def rolled() -> bool:
        return len(alive) == 3 and all(seen[n][0].endswith(":2") and seen[n][1] for n in alive)

    while not rolled() and time.monotonic() < deadline:
        watch = kwatch.Watch()  # a stream may end before the roll does: resume where it ended
        for event in watch.stream(
            core.list_namespaced_pod,
            k8s_namespace,
            label_selector="finex.io/queue=matrix",
            resource_version=version,
            timeout_seconds=30,
        ):
            pod = event["object"]
            version = pod.metadata.resource_version
            name = pod.metadata.name
            if event["type"] == "DELETED":
                alive.discard(name)
            else:
                alive.add(name)
                statuses = pod.status.container_statuses or []
                ready = bool(statuses) and all(s.ready for s in statuses)
                seen[name] = (pod.spec.containers[0].image, ready)
                if ready:
                    images.add(pod.spec.containers[0].image)
            peak = max(peak, len(alive))
            if rolled():
                watch.stop()
    print(f"\npods at once during the roll: peak {peak} (replicas 3)")
    assert rolled(), f"the roll did not finish: {seen}"
    assert "registry.invalid/finex-workers:2" in images
    assert peak <= 3
