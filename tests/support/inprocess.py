"""The real worker loop in the test's own process, without its command channel.

FinexWorker subscribes to its pub/sub command channel at birth and stops that thread at
teardown; redis-py's PubSubWorkerThread.stop can then wait a minute (a known hang, handled on
its own). The tests that use this class exercise the job path (claim, run, finish, failure,
retry, timeout), not commands, so they leave the channel out and stay fast.
"""

from __future__ import annotations

from uuid import uuid4

import redis

from finex_workers.infra.redisconn import get_queue
from finex_workers.runtime.worker import FinexWorker


class InProcessWorker(FinexWorker):
    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


def run_burst(conn: redis.Redis, queue: str, max_jobs: int | None = None) -> InProcessWorker:
    """Run the worker loop until the queue is empty (or max_jobs ran), then return it."""
    worker = InProcessWorker(
        [get_queue(queue, conn)], connection=conn, name=f"{queue}.test-{uuid4().hex[:6]}"
    )
    worker.work(burst=True, max_jobs=max_jobs, logging_level="WARNING")
    return worker
