"""``finex exporter``: the queue exporter, its own process, serving /metrics over HTTP.

Its own process (one per cluster is enough) because queue state is global: every worker pod
serving it would report the same numbers N times. It keeps no state; each scrape reads Redis.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from finex_workers.core.settings import Settings

log = logging.getLogger("finex.exporter")


def serve(settings: Settings, queues: Sequence[str], *, host: str, port: int) -> int:
    """Serve /metrics until SIGTERM or SIGINT; returns the exit code."""
    from prometheus_client import start_http_server

    from finex_workers.infra.redisconn import redis_from_url
    from finex_workers.observability.metrics import exporter_registry

    registry = exporter_registry(lambda: redis_from_url(settings.redis_url), queues)
    server, thread = start_http_server(port, addr=host, registry=registry)
    log.info("serving queue metrics for %s on http://%s:%d/metrics", ", ".join(queues), host, port)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(1.0):
        pass
    server.shutdown()
    server.server_close()
    thread.join(5)
    log.info("exporter stopped")
    return 0
