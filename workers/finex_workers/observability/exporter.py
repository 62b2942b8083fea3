"""``finex exporter``: the queue exporter, its own process, serving /metrics over HTTP.

Its own process (one per cluster is enough) because queue state is global: every worker pod
serving it would report the same numbers N times. It keeps no state; each scrape reads Redis.

While Redis does not answer, a scrape still fails (HTTP 500, so Prometheus records ``up == 0``
and ExporterDown fires), but the body is one line saying what is wrong, with REDIS_URL's
password redacted, and the log gets the same line instead of a traceback per scrape.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from finex_workers.core.settings import Settings

log = logging.getLogger("finex.exporter")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        return None


def explaining_errors(app: WsgiApp, settings: Settings) -> WsgiApp:
    """Wrap the metrics app: a Redis or PostgreSQL failure becomes a one-line HTTP 500."""
    from finex_workers.infra.reachability import describe

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            return app(environ, start_response)
        except Exception as exc:
            unreachable = describe(exc, settings)
            if unreachable is None:
                raise
            line = f"finex exporter: {unreachable}"
            log.error("scrape failed: %s", unreachable)
            body = (line + "\n").encode()
            start_response(
                "500 Internal Server Error",
                [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
            )
            return [body]

    return wrapped


def serve(settings: Settings, queues: Sequence[str], *, host: str, port: int) -> int:
    """Serve /metrics until SIGTERM or SIGINT; returns the exit code."""
    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    from finex_workers.infra.redisconn import redis_from_url, warn_if_evicting
    from finex_workers.observability.metrics import exporter_registry

    with contextlib.suppress(Exception):  # Redis not up yet: the scrape will say so
        warn_if_evicting(redis_from_url(settings.redis_url), log)

    registry = exporter_registry(lambda: redis_from_url(settings.redis_url), queues)
    app = explaining_errors(make_wsgi_app(registry), settings)

    class Server(ThreadingWSGIServer):
        # IPv6 too (--host ::), as prometheus_client's own start_http_server picks it.
        address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    server = make_server(host, port, app, Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
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
