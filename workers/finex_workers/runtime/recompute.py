"""Fan-out of recompute work, and waiting for the queues to go idle with progress.

A full recompute enqueues a probability job per scenario and a growth job per chunk of assets.
Their follow-ups recompute the matrix: each growth chunk enqueues that chunk's rows, and each
probability job enqueues its group's columns. Every enqueue is deduplicated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg
import redis

from finex_workers import control, domain
from finex_workers.core.names import QUEUE_NAMES
from finex_workers.core.settings import Settings
from finex_workers.infra.redisconn import get_queue
from finex_workers.runtime import enqueue


@dataclass
class Plan:
    """What a fan-out enqueued: new jobs, and ones that were already pending."""

    created: int = 0
    deduplicated: int = 0

    def add(self, result: enqueue.Enqueued) -> None:
        if result.created:
            self.created += 1
        else:
            self.deduplicated += 1


def enqueue_full(
    conn: redis.Redis, settings: Settings, progress: Callable[[int, int], None] | None = None
) -> Plan:
    """Recompute everything: probabilities, growth (in chunks), and through them the matrix."""
    with psycopg.connect(settings.database_url, autocommit=True) as db:
        chunks = domain.asset_ids(db, chunk=settings.matrix_chunk)
        scenarios = domain.scenario_ids(db)
    plan = Plan()
    total = len(chunks) + len(scenarios)
    done = 0
    for sid in scenarios:
        plan.add(enqueue.probability(conn, settings, sid))
        done += 1
        if progress:
            progress(done, total)
    for chunk in chunks:
        plan.add(enqueue.growth_batch(conn, settings, chunk))
        done += 1
        if progress:
            progress(done, total)
    return plan


def enqueue_one(conn: redis.Redis, settings: Settings, what: str, *ids: int) -> str:
    """Enqueue one recompute and say what happened, for the CLI."""
    if what == "growth":
        result = enqueue.growth(conn, settings, ids[0])
    elif what == "probability":
        result = enqueue.probability(conn, settings, ids[0])
    else:
        result = enqueue.matrix_rows(conn, settings, list(ids))
    verb = "enqueued" if result.created else "already pending"
    return f"{what} {list(ids)}: {verb} as {result.job_id}"


def outstanding(conn: redis.Redis, queues: Sequence[str] = QUEUE_NAMES) -> int:
    """Jobs waiting, running or scheduled for retry, over these queues (default: every one)."""
    total = 0
    for name in queues:
        state = control.queue_state(conn, name)
        total += state.waiting + state.active + state.delayed
        total += conn.llen(get_queue(name, conn).intermediate_queue_key)
    return total


def completed(conn: redis.Redis) -> int:
    return sum(control.queue_state(conn, q).completed for q in QUEUE_NAMES)


def wait_until_idle(
    conn: redis.Redis,
    progress: Callable[[int, int], None] | None = None,
    timeout: float | None = None,
    poll: float = 0.5,
) -> int:
    """Block until no job is waiting, running or delayed; 0 when idle, 1 on timeout."""
    start_completed = completed(conn)
    deadline = None if timeout is None else time.monotonic() + timeout
    idle_polls = 0
    while True:
        left = outstanding(conn)
        done = completed(conn) - start_completed
        if progress:
            progress(done, done + left)
        # Two idle polls in a row: a job finishing may enqueue its follow-up just after.
        idle_polls = idle_polls + 1 if left == 0 else 0
        if idle_polls >= 2:
            return 0
        if deadline is not None and time.monotonic() > deadline:
            return 1
        time.sleep(poll)
