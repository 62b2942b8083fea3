"""The computations on PostgreSQL: what the matrix, growth and probability jobs actually do.

One module per computation (:mod:`.matrix`, :mod:`.growth`, :mod:`.probability`), their inputs
(:mod:`.inputs`), id checks and listings (:mod:`.ids`), and demo data apart (:mod:`.seed`). The
formulas themselves are pure functions in :mod:`finex_workers.core.formulas`. Callers import
this package (``from finex_workers import domain``) and use the names below.
"""

from finex_workers.domain.growth import GrowthResult, update_growth
from finex_workers.domain.ids import ASSET_CLASSES, Connection, asset_ids, scenario_ids
from finex_workers.domain.inputs import add_evidence, add_prices
from finex_workers.domain.matrix import compute_matrix
from finex_workers.domain.probability import group_members, update_probability
from finex_workers.domain.seed import SeedSummary, seed

__all__ = [
    "ASSET_CLASSES",
    "Connection",
    "GrowthResult",
    "SeedSummary",
    "add_evidence",
    "add_prices",
    "asset_ids",
    "compute_matrix",
    "group_members",
    "scenario_ids",
    "seed",
    "update_growth",
    "update_probability",
]
