"""Demo data for ``make dev``, the benchmarks and the tests: assets with simulated prices, and
scenarios in groups and standalone, with shocks and evidence. Kept apart from the computations,
which never import it."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from finex_workers.core import formulas
from finex_workers.core.errors import AlreadySeededError, InvalidValueError
from finex_workers.domain.ids import ASSET_CLASSES, Connection

#: Per class: (annual drift, annual volatility) of the simulated prices and the shocks'
#: reference volatility. Rough, plausible orders of magnitude, not market data.
_CLASS_PARAMS: Final[dict[str, tuple[float, float]]] = {
    "equity": (0.07, 0.20),
    "bond": (0.03, 0.06),
    "commodity": (0.04, 0.25),
    "fx": (0.00, 0.10),
    "crypto": (0.20, 0.70),
    "real_estate": (0.05, 0.15),
}

#: Mutually exclusive groups (name, [(scenario, prior)]) whose priors sum to 1, and named
#: standalone scenarios, in the order the seed takes them.
_GROUPS: Final = (
    ("rates", (("rate_hike", 0.3), ("rate_hold", 0.5), ("rate_cut", 0.2))),
    ("cycle", (("recession", 0.25), ("soft_landing", 0.5), ("expansion", 0.25))),
)
_STANDALONE: Final = (
    "oil_supply_shock",
    "crypto_crackdown",
    "sovereign_default",
    "pandemic_wave",
    "property_slump",
    "usd_spike",
)

_DOMAIN_TABLES: Final = (
    "impact_scores",
    "scenario_evidence",
    "scenario_shocks",
    "scenarios",
    "scenario_groups",
    "asset_prices",
    "assets",
)


@dataclass(frozen=True)
class SeedSummary:
    """Row counts written by :func:`seed`."""

    assets: int
    prices: int
    scenario_groups: int
    scenarios: int
    shocks: int
    evidence: int


def _business_days(end: date, count: int) -> list[date]:
    """The ``count`` weekdays up to and including ``end``, oldest first."""
    days: list[date] = []
    day = end
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day -= timedelta(days=1)
    days.reverse()
    return days


def _plan_scenarios(count: int) -> list[tuple[str, str | None, float | None]]:
    """(name, group, prior) for ``count`` scenarios: whole groups first, then standalone ones.

    A group is only taken whole, so its priors always sum to 1. ``None`` prior: draw one.
    """
    plan: list[tuple[str, str | None, float | None]] = []
    standalone = list(_STANDALONE)
    for group, members in _GROUPS:
        if count - len(plan) >= len(members):
            plan.extend((name, group, prior) for name, prior in members)
        if standalone and len(plan) < count:
            plan.append((standalone.pop(0), None, None))
    generic = 0
    while len(plan) < count:
        if standalone:
            name = standalone.pop(0)
        else:
            generic += 1
            name = f"scenario_{generic:04d}"
        plan.append((name, None, None))
    return plan


def seed(
    conn: Connection,
    *,
    assets: int,
    scenarios: int,
    days: int = 260,
    seed: int = 42,
    end_date: date = date(2024, 12, 31),
    replace: bool = False,
) -> SeedSummary:
    """Write deterministic demo data: the same arguments always give the same rows.

    ``assets`` positions spread over the six classes (about one in seven short), each with a
    geometric-Brownian-motion price history of ``days`` business days ending at ``end_date``;
    ``scenarios`` scenarios (the "rates" and "cycle" groups when they fit whole, then standalone
    ones), a shock per asset class for most scenario/class pairs (some left out, so the "no
    shock means impact 0" rule shows up), and evidence on about half the scenarios. Growth,
    volatility and the matrix are left for the workers to compute.

    Prices are written with COPY, so 10,000 assets x 260 days take seconds, not minutes.
    Refuses with :class:`AlreadySeededError` if assets exist, unless ``replace`` is set, which
    empties every domain table first (in the same transaction).
    """
    if assets < 0 or scenarios < 0 or days < 0:
        raise InvalidValueError("assets, scenarios and days must be >= 0")
    # Demo data, not secrets: a seeded, reproducible generator is the point.
    rng = random.Random(seed)  # noqa: S311
    with conn.transaction():
        cur = conn.cursor(row_factory=tuple_row)
        if replace:
            cur.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                    sql.SQL(", ").join(map(sql.Identifier, _DOMAIN_TABLES))
                )
            )
        elif cur.execute("SELECT EXISTS (SELECT 1 FROM assets)").fetchone() == (True,):
            raise AlreadySeededError(
                "the database already has assets; seed an empty database or pass replace=True"
            )
        n_assets, n_prices = _seed_assets(cur, rng, assets, _business_days(end_date, days))
        n_groups, n_scenarios, n_shocks, n_evidence = _seed_scenarios(cur, rng, scenarios)
    return SeedSummary(
        assets=n_assets,
        prices=n_prices,
        scenario_groups=n_groups,
        scenarios=n_scenarios,
        shocks=n_shocks,
        evidence=n_evidence,
    )


def _seed_assets(
    cur: psycopg.Cursor[tuple[Any, ...]], rng: random.Random, count: int, days: Sequence[date]
) -> tuple[int, int]:
    """Demo assets and their GBM price paths: ``p_{t+1} = p_t exp((mu - s^2/2) dt + s sqrt(dt) Z)``.

    Returns (assets, prices) written.
    """
    dt = 1 / formulas.TRADING_DAYS_PER_YEAR
    specs: list[tuple[str, str, float, float]] = []  # symbol, class, exposure, sigma
    for n in range(1, count + 1):
        asset_class = rng.choice(ASSET_CLASSES)
        _, sigma = _CLASS_PARAMS[asset_class]
        size = round(rng.lognormvariate(13.0, 1.0), 2)  # median about 440k
        exposure = -size if rng.random() < 0.15 else size
        symbol = f"{asset_class[:3].upper()}{n:06d}"
        specs.append((symbol, asset_class, exposure, sigma * rng.uniform(0.6, 1.4)))
    with cur.copy("COPY assets (symbol, asset_class, exposure) FROM STDIN") as copy:
        for symbol, asset_class, exposure, _ in specs:
            copy.write_row((symbol, asset_class, exposure))
    ids: dict[str, int] = {
        str(r[0]): int(r[1]) for r in cur.execute("SELECT symbol, id FROM assets")
    }
    # COPY text format built by hand, one block per asset: several times faster than write_row
    # per price. repr() of a float is its shortest exact form, so no precision is lost.
    day_texts = [d.isoformat() for d in days]
    with cur.copy("COPY asset_prices (asset_id, observed_on, price) FROM STDIN") as copy:
        for symbol, asset_class, _, sigma in specs:
            mu, _ = _CLASS_PARAMS[asset_class]
            drift = (mu - sigma * sigma / 2) * dt
            diffusion = sigma * math.sqrt(dt)
            asset_id = ids[symbol]
            price = rng.uniform(10.0, 500.0)
            lines = []
            for day in day_texts:
                lines.append(f"{asset_id}\t{day}\t{price!r}\n")
                price *= math.exp(drift + diffusion * rng.gauss(0.0, 1.0))
            copy.write("".join(lines))
    return len(specs), len(specs) * len(days)


def _seed_scenarios(
    cur: psycopg.Cursor[tuple[Any, ...]], rng: random.Random, count: int
) -> tuple[int, int, int, int]:
    """Demo groups, scenarios, shocks and evidence; returns how many of each were written."""
    plan = _plan_scenarios(count)
    group_ids: dict[str, int] = {}
    for name in sorted({g for _, g, _ in plan if g is not None}):
        row = cur.execute(
            "INSERT INTO scenario_groups (name) VALUES (%s) RETURNING id", (name,)
        ).fetchone()
        assert row is not None  # RETURNING of a one-row insert
        group_ids[name] = int(row[0])
    scenario_rows = []
    for name, group, prior in plan:
        p = prior if prior is not None else round(rng.uniform(0.02, 0.4), 4)
        scenario_rows.append((name, group_ids[group] if group else None, p, p))
    cur.executemany(
        "INSERT INTO scenarios (name, group_id, prior_probability, probability)"
        " VALUES (%s, %s, %s, %s)",
        scenario_rows,
    )
    sids = [int(r[0]) for r in cur.execute("SELECT id FROM scenarios ORDER BY id")]
    shocks = []
    evidence = []
    for sid in sids:
        for asset_class in ASSET_CLASSES:
            if rng.random() < 0.2:
                continue  # this scenario leaves this class alone: impact 0
            _, ref_vol = _CLASS_PARAMS[asset_class]
            shock = round(max(rng.gauss(-0.1, 0.15), -0.95), 4)
            shocks.append((sid, asset_class, shock, ref_vol))
        if rng.random() < 0.5:
            for k in range(rng.randint(1, 3)):
                lr = round(math.exp(rng.gauss(0.0, 0.5)), 4)
                evidence.append((sid, lr, f"demo observation {k + 1}"))
    cur.executemany(
        "INSERT INTO scenario_shocks (scenario_id, asset_class, shock, reference_volatility)"
        " VALUES (%s, %s, %s, %s)",
        shocks,
    )
    cur.executemany(
        "INSERT INTO scenario_evidence (scenario_id, likelihood_ratio, note) VALUES (%s, %s, %s)",
        evidence,
    )
    return len(group_ids), len(sids), len(shocks), len(evidence)
