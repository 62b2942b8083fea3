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


def test_a_postgres_data_dir_the_postgres_user_cannot_reach_is_refused_clearly(tmp_path) -> None:
    import os

    import pytest

    from finex_workers.dev import localservices

    hidden = tmp_path / "private"  # pytest's tmp_path is 0700 and ours
    hidden.mkdir(mode=0o700)
    target = hidden / "pg"
    if os.geteuid() == 0:  # initdb runs as the postgres user, which cannot enter `hidden`
        with pytest.raises(localservices.ServiceError, match="FINEX_DEV_DATA_DIR"):
            localservices.init_postgres(target)
    else:  # initdb runs as us, the owner: nothing to refuse
        localservices.init_postgres(target)
        assert (target / "PG_VERSION").exists()
