"""The matrix: an impact score for every asset x scenario pair, in one set-based upsert.

Like every domain module, it takes an open psycopg connection and plain ids, does its writes in
one transaction (a savepoint when the caller already has one open), and writes only rows whose
values change (``IS DISTINCT FROM``): a second run with the same inputs changes no row and
reports 0. Queries use a tuple-row cursor of their own, whatever the caller's row factory.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql
from psycopg.rows import tuple_row

from finex_workers.core import formulas
from finex_workers.domain.ids import Connection, require_ids

# The pure functions formulas.volatility_scale, impact and weighted_impact, in SQL. The
# multiplication order matches formulas.py so both give the same bits. A pair whose scenario has
# no shock for the asset's class gets shock 0 and vol_scale 1, hence impact 0. Rows are produced
# in primary-key order so overlapping jobs (an asset chunk and a scenario column) take their row
# locks in the same order, which avoids most deadlocks; any left are retried by the runtime.
_MATRIX_UPSERT = """
INSERT INTO impact_scores AS cur
    (asset_id, scenario_id, shock, vol_scale, probability, impact, weighted_impact)
SELECT a.id, s.id, v.shock, v.vol_scale, s.probability,
       a.exposure * v.shock * v.vol_scale,
       a.exposure * v.shock * v.vol_scale * s.probability
FROM assets AS a
CROSS JOIN scenarios AS s
LEFT JOIN scenario_shocks AS sh ON sh.scenario_id = s.id AND sh.asset_class = a.asset_class
CROSS JOIN LATERAL (
    SELECT coalesce(sh.shock, 0.0::float8) AS shock,
           CASE WHEN sh.scenario_id IS NULL OR a.volatility IS NULL THEN 1.0::float8
                ELSE least(greatest(a.volatility / sh.reference_volatility,
                                    %(lo)s::float8), %(hi)s::float8)
           END AS vol_scale
) AS v
{where}
ORDER BY a.id, s.id
ON CONFLICT (asset_id, scenario_id) DO UPDATE SET
    shock = EXCLUDED.shock,
    vol_scale = EXCLUDED.vol_scale,
    probability = EXCLUDED.probability,
    impact = EXCLUDED.impact,
    weighted_impact = EXCLUDED.weighted_impact,
    computed_at = now()
WHERE (cur.shock, cur.vol_scale, cur.probability, cur.impact, cur.weighted_impact)
    IS DISTINCT FROM
    (EXCLUDED.shock, EXCLUDED.vol_scale, EXCLUDED.probability, EXCLUDED.impact,
     EXCLUDED.weighted_impact)
"""


def compute_matrix(
    conn: Connection,
    *,
    asset_ids: Sequence[int] | None = None,
    scenario_ids: Sequence[int] | None = None,
) -> int:
    """Recompute the impact cells for these assets x these scenarios; return rows changed.

    ``None`` means every asset (or scenario); an empty list means none, so nothing is done. A
    growth update passes one asset (its matrix row), a probability update passes its scenarios
    (their columns), and a full recompute fans out over :func:`asset_ids` chunks.

    One set-based ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` does the whole block, with no
    per-row round trips. Rows whose values did not change are not rewritten, so the count is
    "inserted or changed" and a second run returns 0.

    Raises :class:`UnknownIdError` naming the field and every missing id when an id names no
    row: such a job can never succeed, and silently computing a smaller block would hide it.
    """
    if asset_ids is not None and not asset_ids:
        return 0
    if scenario_ids is not None and not scenario_ids:
        return 0
    conditions: list[sql.Composable] = []
    params: dict[str, object] = {"lo": formulas.VOL_SCALE_MIN, "hi": formulas.VOL_SCALE_MAX}
    if asset_ids is not None:
        conditions.append(sql.SQL("a.id = ANY(%(asset_ids)s::bigint[])"))
        params["asset_ids"] = list(asset_ids)
    if scenario_ids is not None:
        conditions.append(sql.SQL("s.id = ANY(%(scenario_ids)s::bigint[])"))
        params["scenario_ids"] = list(scenario_ids)
    where = sql.SQL("WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
    query = sql.SQL(_MATRIX_UPSERT).format(where=where)
    with conn.transaction():
        if asset_ids is not None:
            require_ids(conn, "assets", "asset_id", asset_ids)
        if scenario_ids is not None:
            require_ids(conn, "scenarios", "scenario_id", scenario_ids)
        cur = conn.cursor(row_factory=tuple_row)
        cur.execute(query, params)
        return max(cur.rowcount, 0)
