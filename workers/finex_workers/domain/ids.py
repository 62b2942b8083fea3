"""What every domain module shares: the connection type, the asset classes the schema allows,
and id checks and listings. A job's unknown id is a payload error that names the field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from finex_workers.core.errors import InvalidValueError, UnknownIdError

ASSET_CLASSES: Final = ("equity", "bond", "commodity", "fx", "crypto", "real_estate")

Connection = psycopg.Connection[Any]


def missing_ids(conn: Connection, table: str, ids: Sequence[int]) -> list[int]:
    """The ids in ``ids`` with no row in ``table``, found in one query."""
    query = sql.SQL(
        "SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM"
        " (SELECT unnest(%s::bigint[]) EXCEPT SELECT id FROM {}) AS missing(id)"
    ).format(sql.Identifier(table))
    row = conn.cursor(row_factory=tuple_row).execute(query, (list(ids),)).fetchone()
    assert row is not None  # an aggregate always returns one row
    return list(row[0])


def require_ids(conn: Connection, table: str, field: str, ids: Sequence[int]) -> None:
    missing = missing_ids(conn, table, ids)
    if missing:
        raise UnknownIdError(field, missing)


def asset_ids(conn: Connection, *, chunk: int) -> list[list[int]]:
    """Every asset id in ascending order, cut into lists of at most ``chunk`` ids.

    A full recompute enqueues one matrix job per chunk, so each job is one bounded statement.
    """
    if chunk < 1:
        raise InvalidValueError(f"chunk must be >= 1, got {chunk}")
    ids = [
        int(r[0])
        for r in conn.cursor(row_factory=tuple_row).execute("SELECT id FROM assets ORDER BY id")
    ]
    return [ids[i : i + chunk] for i in range(0, len(ids), chunk)]


def scenario_ids(conn: Connection) -> list[int]:
    """Every scenario id in ascending order."""
    cur = conn.cursor(row_factory=tuple_row)
    return [int(r[0]) for r in cur.execute("SELECT id FROM scenarios ORDER BY id")]
