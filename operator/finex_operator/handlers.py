"""Every kopf registration of the operator, and nothing else: thin handlers over reconcile().

Run with `kopf run -m finex_operator.handlers` (or `python -m finex_operator`). Create, update,
resume and a 1-second timer all call the same level-based reconcile; handlers return None so
nothing lands in status, and kopf keeps its bookkeeping in finex.io annotations.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf
from kubernetes import client, config

from finex_operator.reconcile import Runtime, reconcile
from finex_operator.settings import OperatorSettings

RESOURCE = ("finex.io", "v1alpha1", "finexworkerpools")
#: The timer's period, a constant (never configuration read at import): the restart advances at
#: most one phase per reconcile, so this bounds each phase's extra latency.
TICK_SECONDS = 1.0


def _post(body: dict[str, Any], type_: str, reason: str, message: str) -> None:
    kopf.event(
        kopf.Body(cast(kopf.RawBody, body)), type=type_, reason=reason, message=message[:1000]
    )


class _QuietTicks(logging.Filter):
    """Drop kopf's INFO line for every successful timer run: once a second per pool, it buries
    the Events-worthy lines. Failures and everything else still log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timer 'tick' succeeded")


def _api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="finex.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="finex.io")
    settings.persistence.finalizer = "finex.io/operator"
    settings.posting.level = logging.INFO
    # A pool deleted while a tick runs: the tick (a thread) cannot be cancelled, so kopf polls
    # until it ends before releasing the finalizer. Its default 60 s poll held every such
    # deletion for a minute; a tick lasts well under its own period.
    settings.background.cancellation_polling = TICK_SECONDS
    logging.getLogger("kopf.objects").addFilter(_QuietTicks())
    memo.runtime = Runtime(api=_api_client(), settings=OperatorSettings.from_env(), post=_post)


@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
@kopf.on.resume(*RESOURCE)
def changed(*, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    reconcile(memo.runtime, namespace or "", name)


@kopf.timer(*RESOURCE, interval=TICK_SECONDS)
def tick(*, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    reconcile(memo.runtime, namespace or "", name)


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    for conn in runtime.redis_clients.values():
        conn.close()
    runtime.api.close()  # type: ignore[no-untyped-call]
