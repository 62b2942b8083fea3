"""The inputs the jobs read: evidence for scenarios and daily prices for assets.

Used by the CLI, the demo seed and the tests; the jobs themselves only read them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date

from psycopg.rows import tuple_row

from finex_workers.core.errors import InvalidValueError, UnknownIdError
from finex_workers.domain.ids import Connection, require_ids


def add_evidence(
    conn: Connection, scenario_id: int, likelihood_ratio: float, note: str = ""
) -> int:
    """Record one piece of evidence for a scenario; return its id.

    Evidence is append-only: each observation counts once, and the probability job folds all of
    them in. The caller then enqueues :func:`update_probability` for the scenario.
    """
    if not math.isfinite(likelihood_ratio) or likelihood_ratio <= 0:
        raise InvalidValueError(
            f"likelihood_ratio must be a finite number > 0, got {likelihood_ratio!r}"
        )
    with conn.transaction():
        row = (
            conn.cursor(row_factory=tuple_row)
            .execute(
                "INSERT INTO scenario_evidence (scenario_id, likelihood_ratio, note)"
                " SELECT id, %s, %s FROM scenarios WHERE id = %s RETURNING id",
                (likelihood_ratio, note, scenario_id),
            )
            .fetchone()
        )
    if row is None:
        raise UnknownIdError("scenario_id", [scenario_id])
    return int(row[0])


def add_prices(conn: Connection, asset_id: int, rows: Iterable[tuple[date, float]]) -> int:
    """Upsert daily prices for an asset; return how many rows were inserted or changed.

    A corrected price for a date replaces the old one. All rows go in one statement; a
    duplicated date in ``rows`` is refused because it is ambiguous which price is meant.
    """
    days: list[date] = []
    prices: list[float] = []
    for i, (day, price) in enumerate(rows):
        if not math.isfinite(price) or price <= 0:
            raise InvalidValueError(f"rows[{i}] price must be a finite number > 0, got {price!r}")
        days.append(day)
        prices.append(float(price))
    if len(set(days)) != len(days):
        raise InvalidValueError("rows contain the same observed_on date more than once")
    if not days:
        return 0
    with conn.transaction():
        require_ids(conn, "assets", "asset_id", [asset_id])
        cur = conn.cursor(row_factory=tuple_row)
        cur.execute(
            "INSERT INTO asset_prices AS cur (asset_id, observed_on, price)"
            " SELECT %s, d, p FROM unnest(%s::date[], %s::float8[]) AS v(d, p)"
            " ON CONFLICT (asset_id, observed_on) DO UPDATE SET price = EXCLUDED.price"
            " WHERE cur.price IS DISTINCT FROM EXCLUDED.price",
            (asset_id, days, prices),
        )
        return max(cur.rowcount, 0)
