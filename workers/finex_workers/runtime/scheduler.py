"""The scheduler process: RQ's ``RQScheduler`` without its dead time after crashes.

RQ's scheduler moves due retries (and ``enqueue_in``/``enqueue_at`` jobs) from each queue's
ScheduledJobRegistry onto the queue. Three changes, each because of a measured stall
(bench/README.md, "Dead time after crashes"):

- A scheduler without a queue's lock looks at the lock every tick, not every 120 s, and takes
  it over from a dead holder at once (``control.scheduling.take_over_lock``), instead of waiting
  out the dead holder's 61 s lock.
- A lost Redis connection (a Redis restart, a Sentinel failover) does not end the process: it
  logs one line, waits with a capped backoff and carries on with the locks it held, which a
  restart from the AOF kept.
- Due jobs move in one script per queue (``control.scheduling.move_due_jobs``): RQ reads the
  due ids and enqueues them in a later round trip, so a scheduler that took the lock over and
  the old holder, still alive, could both enqueue one job.
- The connection is the one given (RQ rebuilds a pool from its kwargs, which loses a Sentinel
  connection pool's master discovery).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis
from rq.scheduler import RQScheduler

from finex_workers.control.scheduling import move_due_jobs, take_over_lock
from finex_workers.infra.processes import pid_namespace
from finex_workers.runtime.redis_wait import delays

log = logging.getLogger("finex.scheduler")

#: Backoff while Redis does not answer, seconds (first, cap).
REDIS_BACKOFF = (0.2, 5.0)


class FinexScheduler(RQScheduler):
    """One per supervisor; the lock keeps one active per queue fleet-wide."""

    def __init__(self, queues: Sequence[str], connection: redis.Redis, **kwargs: Any) -> None:
        super().__init__(list(queues), connection=connection, **kwargs)
        self._given = connection

    @property
    def connection(self) -> redis.Redis:
        return self._given

    @property
    def should_reacquire_locks(self) -> bool:
        return bool(self._queue_names - self.acquired_locks)

    def acquire_locks(self, auto_start: bool = False) -> set[str]:
        ttl = self.interval + 60
        held = set(super().acquire_locks())  # type: ignore[no-untyped-call]
        for name in self._queue_names - held:
            reason = take_over_lock(self.connection, name, self.name, ttl)
            if reason is not None:
                log.warning("took over the scheduler lock of %s: %s", name, reason)
                held.add(name)
        self._acquired_locks = held
        self._scheduled_job_registries = []
        return held

    def enqueue_scheduled_jobs(self) -> None:
        self._status = self.Status.WORKING
        for name in sorted(self._acquired_locks):
            moved = move_due_jobs(self.connection, name)
            if moved:
                log.info("moved %d due job(s) onto %s", len(moved), name)
        self._status = self.Status.STARTED

    def register_birth(self) -> None:
        super().register_birth()
        # Where its pid means something (control.scheduling.holder_dead_reason).
        self.connection.hset(self.key, "finex_pidns", pid_namespace())

    def work(self) -> None:
        self._install_signal_handlers()  # type: ignore[no-untyped-call]
        backoff = delays(*REDIS_BACKOFF)
        registered = False
        while not self._stop_requested:
            try:
                if not registered:
                    self.register_birth()
                    registered = True
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()  # type: ignore[no-untyped-call]
                self.enqueue_scheduled_jobs()
                backoff = delays(*REDIS_BACKOFF)
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
                delay = next(backoff)
                log.error("scheduler lost Redis (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                continue
            time.sleep(self.interval)
        self.stop()  # type: ignore[no-untyped-call]


def run_scheduler(redis_conn: redis.Redis, queues: Sequence[str]) -> int:
    """Body of the scheduler process."""
    scheduler = FinexScheduler(queues, redis_conn, interval=1)
    scheduler.work()
    return 0
