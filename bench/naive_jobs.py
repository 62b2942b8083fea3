"""The naive baseline for the matrix benchmark: one RQ job per (asset, scenario) pair.

Each job computes one cell with the same formula as ``domain.compute_matrix`` (same SQL
expression, same multiplication order) and upserts it with one ``INSERT ... SELECT ... ON
CONFLICT DO UPDATE``, in its own autocommit transaction. It is what a straightforward "enqueue
a job per cell" design would do, so the benchmark can show what batching buys.
"""

from __future__ import annotations

from finex_workers import dbconn, formulas
from finex_workers.jobs import require_id, settings

_PAIR_UPSERT = """
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
WHERE a.id = %(asset_id)s AND s.id = %(scenario_id)s
ON CONFLICT (asset_id, scenario_id) DO UPDATE SET
    shock = EXCLUDED.shock,
    vol_scale = EXCLUDED.vol_scale,
    probability = EXCLUDED.probability,
    impact = EXCLUDED.impact,
    weighted_impact = EXCLUDED.weighted_impact,
    computed_at = now()
"""


def naive_pair_job(asset_id: object, scenario_id: object) -> int:
    """Upsert the impact cell of one (asset, scenario) pair; return the rows written (0 or 1)."""
    params = {
        "asset_id": require_id("asset_id", asset_id),
        "scenario_id": require_id("scenario_id", scenario_id),
        "lo": formulas.VOL_SCALE_MIN,
        "hi": formulas.VOL_SCALE_MAX,
    }
    return dbconn.run(
        settings().database_url, lambda conn: conn.execute(_PAIR_UPSERT, params).rowcount
    )
