"""One small HTTP server for every endpoint we serve: the exporter, and a worker pod's job
metrics with its probes. A WSGI app on a threading server, quiet (no access line per scrape),
IPv6 too, stopped cleanly by SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request."""

    def log_message(self, format: str, *args: Any) -> None:
        return None


def plain(start_response: Callable[..., Any], status: str, line: str) -> list[bytes]:
    """A one-line text/plain response."""
    body = (line + "\n").encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]


def serve(app: WsgiApp, *, host: str, port: int, log: logging.Logger, what: str) -> int:
    """Serve app until SIGTERM or SIGINT; returns the exit code."""
    from prometheus_client.exposition import ThreadingWSGIServer

    class Server(ThreadingWSGIServer):
        # IPv6 too (--host ::), as prometheus_client's own start_http_server picks it.
        address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    server = make_server(host, port, app, Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    log.info("serving %s on http://%s:%d", what, host, port)
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
    return 0
