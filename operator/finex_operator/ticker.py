"""One operator-wide loop that reconciles every known pool once per period.

It replaces a kopf timer per pool (which needs a finalizer on every pool). Each pool's reconcile
runs in a worker thread (the Kubernetes and Redis clients block); a pool whose previous
reconcile is still running is skipped this round, so a slow Redis delays only its own pools.
The loop runs in kopf's event loop, where the index it reads is updated, so it never sees the
index change under it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger("finex.operator")

#: Pools reconciled at the same time at most.
MAX_PARALLEL = 8


class Ticker:
    def __init__(
        self, keys: Callable[[], list[Hashable]], tick: Callable[[tuple[str, str]], None]
    ) -> None:
        self._keys = keys
        self._tick = tick
        self._executor = ThreadPoolExecutor(MAX_PARALLEL, thread_name_prefix="finex-tick")
        self._running: dict[Hashable, Future[None]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self, period: float) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(period))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def round(self) -> None:
        """Start a reconcile for every known pool that has none running."""
        keys = self._keys()
        for key in [k for k in self._running if k not in keys]:
            del self._running[key]  # deleted: nothing new starts for it
        for key in keys:
            previous = self._running.get(key)
            if previous is not None and not previous.done():
                continue
            future = self._executor.submit(self._tick, key)  # type: ignore[arg-type]
            future.add_done_callback(_log_failure)
            self._running[key] = future

    async def _loop(self, period: float) -> None:
        while True:
            try:
                self.round()
            except Exception:  # never let one bad round end the loop
                log.exception("reconcile round failed")
            await asyncio.sleep(period)


def _log_failure(future: Future[None]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        log.error("reconcile failed: %s: %s", type(exc).__name__, exc)
