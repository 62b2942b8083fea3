"""A worker pod's probes, served beside its job metrics on the supervisor's metrics port.

- ``/livez``: the supervisor (the container's PID 1) is running. The supervisor restarts its own
  crashed workers, and a Redis outage is not cured by a container restart, so liveness asks
  nothing of Redis: restarting a pod whose Redis is down would only lose its warm state.
- ``/readyz``: every queue this pod serves has at least one live worker *of this pod* in Redis:
  registered with a fresh heartbeat and listening on its command channel (the same test as
  ``finex workers status``). That is what "this pod can take jobs" means. While Redis is
  unreachable, or before the workers have registered, it answers 503 with one line saying why.
  A paused queue's workers are live, so a paused pod stays ready.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from finex_workers.core.settings import Settings
from finex_workers.observability.http import WsgiApp, plain


def readiness(settings: Settings, queues: Sequence[str], host: str) -> tuple[bool, str]:
    """(ready, one line why) for this host's workers of the given queues."""
    from finex_workers.infra.reachability import describe
    from finex_workers.infra.redisconn import redis_from_url
    from finex_workers.infra.rqworkers import with_listeners

    try:
        conn = redis_from_url(settings.redis_url)
        try:
            counts = {
                q: sum(1 for w, alive in with_listeners(conn, q) if alive and w.hostname == host)
                for q in queues
            }
        finally:
            conn.close()
    except Exception as exc:
        reason = describe(exc, settings)
        if reason is None:
            raise
        return False, f"not ready: {reason}"
    missing = [q for q, n in counts.items() if n == 0]
    shown = ", ".join(f"{q} {n}/{settings.concurrency[q]}" for q, n in counts.items())
    if missing:
        return False, f"not ready: no live worker of {', '.join(missing)} on {host} ({shown})"
    return True, f"ready: live workers {shown}"


def probes(
    metrics: WsgiApp, settings: Settings, queues: Sequence[str], supervisor_pid: int
) -> WsgiApp:
    """Route /livez and /readyz to the probes and everything else to the metrics app."""
    host = socket.gethostname()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/livez":
            try:
                os.kill(supervisor_pid, 0)
            except ProcessLookupError:
                return plain(start_response, "503 Service Unavailable", "supervisor is gone")
            return plain(start_response, "200 OK", f"ok: supervisor {supervisor_pid} runs")
        if path == "/readyz":
            ready, line = readiness(settings, queues, host)
            return plain(start_response, "200 OK" if ready else "503 Service Unavailable", line)
        return metrics(environ, start_response)

    return app
