"""Every kopf registration of the operator, and nothing else: thin handlers over reconcile().

Run with `kopf run -m finex_operator.handlers` (or `python -m finex_operator`). Create, update and
resume call the level-based reconcile at once; one operator-wide loop (`ticker.Ticker`) calls it
for every pool in the `pools` index each second. No per-pool timer, so no finalizer: kopf adds
one to each object for its timers and daemons, and that finalizer held `kubectl delete fwp` while
the operator was down. A pool's Deployments go with it through their ownerReferences. A deleted
pool leaves the index on its DELETED event, so the loop stops working for it within a tick; that
event also resumes the queues a restart of that pool had paused (`forget`). Handlers return None
so nothing lands in status, and kopf keeps its bookkeeping in finex.io annotations.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any, cast

import kopf
from kubernetes import client, config

from finex_operator.builders import POOL_LABEL
from finex_operator.podcrash import recover_pod
from finex_operator.reconcile import Runtime, forget, reconcile
from finex_operator.settings import OperatorSettings
from finex_operator.ticker import Ticker
from finex_workers.control.rqmirror import rq_mismatch

RESOURCE = ("finex.io", "v1alpha1", "finexworkerpools")
#: The loop's period, a constant (never configuration read at import): the restart advances at
#: most one phase per reconcile, so this bounds each phase's extra latency.
TICK_SECONDS = 1.0


def _post(body: dict[str, Any], type_: str, reason: str, message: str) -> None:
    kopf.event(
        kopf.Body(cast(kopf.RawBody, body)), type=type_, reason=reason, message=message[:1000]
    )


def _api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


@kopf.index(*RESOURCE)
def pools(
    *, namespace: str | None, name: str, uid: str | None, memo: Any, **_: Any
) -> dict[Any, Any]:
    """(namespace, name) -> uid of every pool kopf sees; kopf drops a pool on its deletion.

    Also keeps the context kopf runs resource handlers in: kopf.event reads kopf's context
    variables (its event queue, its settings), and the loop's reconciles run in a copy of it.
    """
    memo.contexts["kopf"] = contextvars.copy_context()  # a shared dict: memo is per object
    return {(namespace or "", name): uid}


def _tick(memo: Any, key: tuple[str, str]) -> None:
    memo.contexts["kopf"].copy().run(reconcile, memo.runtime, *key)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    refusal = rq_mismatch()
    if refusal is not None:  # the DLQ retry writes rq's structures through control's scripts
        raise kopf.PermanentError(f"finex operator: {refusal}")
    index: kopf.Index[Any, Any] = kwargs["pools"]  # the live index, as kopf passes it
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="finex.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="finex.io")
    # Pools created by earlier releases carry this finalizer; with no handler needing one, kopf
    # removes it from each pool it sees, which it can only do while it knows the name.
    settings.persistence.finalizer = "finex.io/operator"
    settings.posting.level = logging.INFO
    memo.contexts = {}
    memo.runtime = Runtime(api=_api_client(), settings=OperatorSettings.from_env(), post=_post)
    memo.ticker = Ticker(lambda: list(index), lambda key: _tick(memo, key))
    memo.ticker.start(TICK_SECONDS)


@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
@kopf.on.resume(*RESOURCE)
def changed(*, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    reconcile(memo.runtime, namespace or "", name)


@kopf.on.event(*RESOURCE)
def deleted(*, type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    if type == "DELETED":
        forget(memo.runtime, dict(body))


@kopf.on.event("", "v1", "pods", labels={POOL_LABEL: kopf.PRESENT})
def pod_changed(*, body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    """A pool Pod's worker container died: recover its jobs now (podcrash), not at the TTL."""
    if "crash_seen" not in memo:
        memo.crash_seen = set()
    recover_pod(memo.runtime, namespace or "", dict(body), memo.crash_seen)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo.ticker.stop()
    runtime: Runtime = memo.runtime
    for conn in runtime.redis_clients.values():
        conn.close()
    runtime.api.close()  # type: ignore[no-untyped-call]
