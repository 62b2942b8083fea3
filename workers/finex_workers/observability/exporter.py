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
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from finex_workers.core.settings import Settings
from finex_workers.observability.http import WsgiApp, plain
from finex_workers.observability.http import serve as serve_app

log = logging.getLogger("finex.exporter")


def explaining_errors(app: WsgiApp, settings: Settings) -> WsgiApp:
    """Wrap the metrics app: a Redis or PostgreSQL failure becomes a one-line HTTP 500.

    It also answers the Pod's probes: /livez (the process serves) and /readyz (Redis answers
    a PING; 503 with one line why not).
    """
    from finex_workers.infra.reachability import describe
    from finex_workers.infra.redisconn import redis_from_url

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/livez":
            return plain(start_response, "200 OK", "ok")
        if path == "/readyz":
            try:
                redis_from_url(settings.redis_url).ping()
            except Exception as exc:
                reason = describe(exc, settings)
                if reason is None:
                    raise
                return plain(start_response, "503 Service Unavailable", f"not ready: {reason}")
            return plain(start_response, "200 OK", "ready: Redis answers")
        try:
            return app(environ, start_response)
        except Exception as exc:
            unreachable = describe(exc, settings)
            if unreachable is None:
                raise
            log.error("scrape failed: %s", unreachable)
            return plain(
                start_response, "500 Internal Server Error", f"finex exporter: {unreachable}"
            )

    return wrapped


def serve(settings: Settings, queues: Sequence[str], *, host: str, port: int) -> int:
    """Serve /metrics until SIGTERM or SIGINT; returns the exit code."""
    from prometheus_client import make_wsgi_app

    from finex_workers.infra.redisconn import redis_from_url, warn_if_evicting
    from finex_workers.observability.metrics import exporter_registry

    with contextlib.suppress(Exception):  # Redis not up yet: the scrape will say so
        warn_if_evicting(redis_from_url(settings.redis_url), log)

    registry = exporter_registry(lambda: redis_from_url(settings.redis_url), queues)
    app = explaining_errors(make_wsgi_app(registry), settings)
    code = serve_app(
        app, host=host, port=port, log=log, what=f"queue metrics for {', '.join(queues)}"
    )
    log.info("exporter stopped")
    return code
