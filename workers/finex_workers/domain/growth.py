"""Growth: an asset's annualised log-return growth and EWMA volatility, from its prices."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.rows import tuple_row

from finex_workers.core import formulas
from finex_workers.core.errors import InsufficientDataError, InvalidValueError
from finex_workers.domain.ids import Connection, require_ids


@dataclass(frozen=True)
class GrowthResult:
    """What :func:`update_growth` computed, and whether it changed the stored row.

    ``changed`` tells the caller whether the asset's matrix row is now stale.
    """

    asset_id: int
    growth_rate: float
    volatility: float
    observations: int
    changed: bool


def update_growth(conn: Connection, asset_id: int, *, window: int = 252) -> GrowthResult:
    """Recompute an asset's growth rate and EWMA volatility from its last ``window`` returns.

    Reads the latest ``window + 1`` prices (``window`` returns) in date order; an asset with a
    shorter history uses all it has, down to the 3 prices the volatility needs. Fewer raises
    :class:`InsufficientDataError`: the job cannot succeed until prices arrive. The asset is
    updated only when a value differs, so ``changed`` is False on a rerun.
    """
    if window < formulas.MIN_PRICES_VOLATILITY - 1:
        raise InvalidValueError(
            f"window must be >= {formulas.MIN_PRICES_VOLATILITY - 1} returns, got {window}"
        )
    with conn.transaction():
        cur = conn.cursor(row_factory=tuple_row)
        require_ids(conn, "assets", "asset_id", [asset_id])
        prices = [
            float(row[0])
            for row in cur.execute(
                "SELECT price FROM (SELECT observed_on, price FROM asset_prices"
                " WHERE asset_id = %s ORDER BY observed_on DESC LIMIT %s) AS recent"
                " ORDER BY observed_on",
                (asset_id, window + 1),
            )
        ]
        if len(prices) < formulas.MIN_PRICES_VOLATILITY:
            raise InsufficientDataError(
                f"asset_id {asset_id} has {len(prices)} price(s); growth and volatility need"
                f" at least {formulas.MIN_PRICES_VOLATILITY}"
            )
        growth = formulas.annualised_growth(prices)
        volatility = formulas.ewma_volatility(prices)
        cur.execute(
            "UPDATE assets SET growth_rate = %(g)s, volatility = %(v)s, growth_updated_at = now()"
            " WHERE id = %(id)s"
            " AND (growth_rate, volatility) IS DISTINCT FROM (%(g)s::float8, %(v)s::float8)",
            {"id": asset_id, "g": growth, "v": volatility},
        )
        changed = cur.rowcount > 0
    return GrowthResult(asset_id, growth, volatility, len(prices), changed)
