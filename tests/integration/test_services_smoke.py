"""The fixtures give a real Redis and a real, migrated PostgreSQL."""

import psycopg
import redis


def test_redis_is_real_and_flushed(redis_conn: redis.Redis) -> None:
    assert redis_conn.dbsize() == 0
    redis_conn.set("k", "v")
    assert redis_conn.get("k") == b"v"


def test_database_is_migrated(db: psycopg.Connection) -> None:
    rows = db.execute("SELECT version FROM finex_schema_migrations").fetchall()
    assert rows == [] or all(isinstance(r[0], str) for r in rows)
