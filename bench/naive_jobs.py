"""The naive baseline for the matrix benchmark: one RQ job per (asset, scenario) pair.

Each job computes and upserts one cell with ``domain.compute_matrix``'s own ``INSERT ... SELECT
... ON CONFLICT DO UPDATE``, narrowed to one pair, in its own autocommit transaction. It is
what a straightforward "enqueue a job per cell" design would do, so the benchmark can show what
batching buys.
"""

from __future__ import annotations

from psycopg import sql

from finex_workers import domain
from finex_workers.core import formulas
from finex_workers.infra import dbconn
from finex_workers.runtime.jobs import require_id, settings

# The production upsert itself, narrowed to one pair, so the baseline computes exactly the same
# cell with exactly the same SQL; only the granularity (one job and one round trip per pair)
# differs. No id checks are added, which would make the baseline look slower than it is.
_PAIR_UPSERT = sql.SQL(domain._MATRIX_UPSERT).format(
    where=sql.SQL("WHERE a.id = %(asset_id)s AND s.id = %(scenario_id)s")
)


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
