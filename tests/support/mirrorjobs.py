"""Job functions for the equivalence test with rq: the same function runs under both workers.

They take plain arguments and need no database, so what differs between two runs is only what
the workers wrote.
"""

from __future__ import annotations

import time

from rq import get_current_job

from tests.support import redisstate

#: What `snapshot_while_running` saw, per database number, in the order the jobs ran.
SEEN_WHILE_RUNNING: dict[int, list[dict[str, redisstate.Entry]]] = {}


def add(a: int, b: int) -> int:
    return a + b


def fail(reason: str) -> None:
    raise RuntimeError(f"failed on purpose: {reason}")


def record_progress(step: str) -> str:
    """Writes the job's meta while it runs, as a job reporting progress does."""
    job = get_current_job()
    assert job is not None
    job.meta["progress"] = step
    job.save_meta()
    return step


def snapshot_while_running() -> str:
    """The database's state as the worker left it when it started this job."""
    job = get_current_job()
    assert job is not None
    db = int(job.connection.connection_pool.connection_kwargs.get("db", 0))
    SEEN_WHILE_RUNNING.setdefault(db, []).append(redisstate.snapshot(job.connection))
    return "seen"


def run_until_stopped(seconds: float) -> str:
    """Runs until the worker stops it, or gives up after seconds and returns."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return "not stopped"
