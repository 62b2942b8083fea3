"""Versioned schema migrations, applied in order and recorded in ``finex_schema_migrations``.

Each file in ``migrations/`` named ``NNNN_description.sql`` runs once, in its own transaction,
under an advisory lock, so two `finex db migrate` runs at the same time cannot both apply it.
Running it again applies nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: Arbitrary constant so concurrent migrators serialise on one advisory lock.
_LOCK_KEY = 0x46494E4558  # "FINEX"


@dataclass(frozen=True)
class Migration:
    """One SQL file; ``version`` is its file name without the extension."""

    version: str
    path: Path


def available() -> list[Migration]:
    """The migrations shipped with the package, in the order they apply."""
    files = sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return [Migration(f.stem, f) for f in files]


def applied(conn: psycopg.Connection[tuple[Any, ...]]) -> set[str]:
    """Versions already recorded in the database."""
    row = conn.execute("SELECT to_regclass('finex_schema_migrations')").fetchone()
    if row is None or row[0] is None:
        return set()
    return {r[0] for r in conn.execute("SELECT version FROM finex_schema_migrations")}


def migrate(conninfo: str) -> list[str]:
    """Apply every pending migration; return the versions applied now (empty when up to date)."""
    done: list[str] = []
    with psycopg.connect(conninfo) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS finex_schema_migrations ("
                " version text PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
        for migration in available():
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                if migration.version in applied(conn):
                    continue
                conn.execute(migration.path.read_text().encode())
                conn.execute(
                    "INSERT INTO finex_schema_migrations (version) VALUES (%s)",
                    (migration.version,),
                )
                done.append(migration.version)
    return done
