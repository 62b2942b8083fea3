"""Start-up checks of the Redis a queue runs on."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import redis

from finex_workers.dev import localservices
from finex_workers.infra.redisconn import eviction_warning


def test_an_evicting_redis_is_reported(redis_conn) -> None:
    assert eviction_warning(redis_conn) is None  # the fixtures run noeviction
    redis_conn.config_set("maxmemory-policy", "allkeys-lru")
    try:
        warning = eviction_warning(redis_conn)
    finally:
        redis_conn.config_set("maxmemory-policy", "noeviction")
    assert warning is not None
    assert "allkeys-lru" in warning
    assert "noeviction" in warning


def test_an_aof_redis_keeps_its_data_across_a_sigkill() -> None:
    """What `make dev` runs (and the chaos tier restarts): data survive a kill and a restart."""
    folder = Path(tempfile.mkdtemp(prefix="finex-aof-"))
    svc = localservices.start_redis(folder, appendonly=True)
    conn = redis.Redis(port=svc.port)
    conn.rpush("rq:queue:growth", "job-1")
    time.sleep(1.2)  # appendfsync everysec
    os.killpg(svc.process.pid, signal.SIGKILL)
    svc.process.wait()
    svc = localservices.start_redis(folder, svc.port, appendonly=True)
    try:
        assert redis.Redis(port=svc.port).lrange("rq:queue:growth", 0, -1) == [b"job-1"]
    finally:
        svc.stop()
        shutil.rmtree(folder, ignore_errors=True)
