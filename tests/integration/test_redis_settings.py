"""Start-up checks of the Redis a queue runs on."""

from __future__ import annotations

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
