"""The DLQ policy: forced retries by annotation, automatic retries with backoff, parking."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from finex_operator.planner.annotations import (
    RETRY_DLQ_ANNOTATION,
    describe_target,
    parse_target,
)
from finex_operator.planner.model import Event, Observed, Plan
from finex_operator.planner.timestamps import format_time
from finex_operator.reasons import EventReason


def plan_dlq(obs: Observed, plan: Plan) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Forced retries by annotation, then automatic retries with backoff.

    Returns status.dlq and the parked job ids by queue (a parked job has used up
    dlq.maxRetries and is never retried automatically again). A quarantined job (it crashed its
    worker maxCrashes times) is never retried automatically either; the annotation still can.
    """
    previous = dict(obs.status.get("dlq") or {})
    value = obs.annotations.get(RETRY_DLQ_ANNOTATION)
    policy = obs.spec.dlq
    parked: dict[str, list[str]] = {
        q: [e.id for e in obs.dlq.get(q, ()) if e.retries >= policy.max_retries]
        for q in obs.spec.queue_names
    }
    if obs.queues is None:
        return previous, parked
    if value is not None and value != previous.get("retryRequest"):
        if not obs.status.get("observedGeneration"):
            previous["retryRequest"] = value  # baseline at creation, like the restart
            return previous, parked
        targets, error = parse_target(value, obs.spec.queue_names)
        previous["retryRequest"] = value
        if error:
            previous["message"] = f"retry refused: {error}"
            plan.events.append(Event("Warning", EventReason.DLQ_RETRY_REFUSED, error))
            return previous, parked
        for q in targets:
            plan.retry_dlq[q] = None
        previous["lastRetryAt"] = format_time(obs.now)
        previous["message"] = (
            f"retry of the whole DLQ of {', '.join(targets)} requested"
            f" ({value!r}; {describe_target(value)})"
        )
        plan.events.append(Event("Normal", EventReason.DLQ_RETRY_REQUESTED, previous["message"]))
        return previous, {q: [] if q in targets else ids for q, ids in parked.items()}
    if not policy.auto_retry:
        return previous, parked
    for q in obs.spec.queue_names:
        due = [
            e.id
            for e in obs.dlq.get(q, ())
            if e.retries < policy.max_retries
            and not e.quarantined
            and (
                e.failed_at is None
                or (obs.now - e.failed_at) >= timedelta(seconds=policy.backoff(e.retries))
            )
        ]
        if due:
            plan.retry_dlq[q] = due
            plan.events.append(
                Event(
                    "Normal",
                    EventReason.DLQ_AUTO_RETRY,
                    f"{q}: retrying {len(due)} job(s): {_some(due)}",
                )
            )
    before = {str(s.get("name")): int(s.get("parked", 0)) for s in obs.status.get("queues", [])}
    for q, ids in parked.items():
        if len(ids) > before.get(q, 0):
            plan.events.append(
                Event(
                    "Warning",
                    EventReason.DLQ_JOBS_PARKED,
                    f"{q}: {len(ids)} job(s) reached dlq.maxRetries={policy.max_retries} and are"
                    f" parked with their last error (retry with {RETRY_DLQ_ANNOTATION}): "
                    f"{_some(ids)}",
                )
            )
    return previous, parked


def _some(ids: list[str]) -> str:
    """The first five ids, for an Event's message."""
    return ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
