"""The Redis keys we add beside RQ's own, all under ``finex:``.

Jobs live in standard RQ structures (``rq:queue:<name>``, ``rq:job:<id>``, the registries), so
``rq info`` and rq-dashboard keep working. RQ's own key names are built in
:mod:`finex_workers.infra.rqkeys`, from RQ's builders; only ours are written out here.
"""

from __future__ import annotations

PREFIX = "finex:"


def paused_key(queue: str) -> str:
    """Present while the queue is paused: a hash of holder -> since when (control.pausing).

    Workers and claim.lua only test that it EXISTS; Redis deletes it with its last holder.
    """
    return f"{PREFIX}paused:{queue}"


def stats_key(queue: str) -> str:
    """Hash of lifetime counters (completed, failed, dead_lettered, retried) for the queue."""
    return f"{PREFIX}stats:{queue}"


def claim_token_key(execution_id: str) -> str:
    """Which job a claim took, kept for a heartbeat TTL: a re-sent claim returns that job."""
    return f"{PREFIX}claim:{execution_id}"


def dlq_retries_key(queue: str) -> str:
    """Hash job id -> how many times the DLQ sent that job back (manual or by policy)."""
    return f"{PREFIX}dlq-retries:{queue}"


def config_error_key(queue: str) -> str:
    """Present while a worker of the queue reports a configuration error (PostgreSQL refused
    its login or a parameter); the value is that one line. It expires unless renewed."""
    return f"{PREFIX}config-error:{queue}"
