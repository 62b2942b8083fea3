"""Domain operations on PostgreSQL: what the matrix, growth and probability jobs actually do.

Each function takes an open psycopg connection and plain ids, so job functions stay thin and
importable, and tests call these directly. Each one does its writes in one transaction
(``conn.transaction()``, a savepoint when the caller already has one open) and writes with
upserts guarded by ``IS DISTINCT FROM``: a second run with the same inputs changes no row and
reports 0, which is how the tests (and the metrics) see that a job is idempotent.

Queries use a tuple-row cursor of their own, so they work whatever row factory the caller's
connection has.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from finex_workers import formulas
from finex_workers.errors import (
    AlreadySeededError,
    InsufficientDataError,
    InvalidValueError,
    UnknownIdError,
)

#: The asset classes the schema's CHECK constraints allow; shocks are set per class.
ASSET_CLASSES: Final = ("equity", "bond", "commodity", "fx", "crypto", "real_estate")

Connection = psycopg.Connection[Any]


def _missing_ids(conn: Connection, table: str, ids: Sequence[int]) -> list[int]:
    """The ids in ``ids`` with no row in ``table``, found in one query."""
    query = sql.SQL(
        "SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM"
        " (SELECT unnest(%s::bigint[]) EXCEPT SELECT id FROM {}) AS missing(id)"
    ).format(sql.Identifier(table))
    row = conn.cursor(row_factory=tuple_row).execute(query, (list(ids),)).fetchone()
    assert row is not None  # an aggregate always returns one row
    return list(row[0])


def _require_ids(conn: Connection, table: str, field: str, ids: Sequence[int]) -> None:
    missing = _missing_ids(conn, table, ids)
    if missing:
        raise UnknownIdError(field, missing)


# --- matrix ----------------------------------------------------------------------------------

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
            _require_ids(conn, "assets", "asset_id", asset_ids)
        if scenario_ids is not None:
            _require_ids(conn, "scenarios", "scenario_id", scenario_ids)
        cur = conn.cursor(row_factory=tuple_row)
        cur.execute(query, params)
        return max(cur.rowcount, 0)


# --- growth ----------------------------------------------------------------------------------


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
        _require_ids(conn, "assets", "asset_id", [asset_id])
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


# --- probability -----------------------------------------------------------------------------


def update_probability(conn: Connection, scenario_id: int) -> list[int]:
    """Recompute a scenario's probability from its prior and all its evidence.

    A standalone scenario is updated alone, in log-odds. A scenario in a group shares one
    normalisation with the rest of the group, so every scenario of the group is recomputed.
    Returns the ids (sorted) whose probability changed: their matrix columns are now stale.

    The group's rows are locked ``FOR NO KEY UPDATE`` in id order first, so two updates of the
    same group run one after the other and the second sees the first's evidence. (``NO KEY``
    because it still lets new evidence rows be inserted: their foreign-key check only takes a
    key-share lock.)
    """
    with conn.transaction():
        cur = conn.cursor(row_factory=tuple_row)
        row = cur.execute("SELECT group_id FROM scenarios WHERE id = %s", (scenario_id,)).fetchone()
        if row is None:
            raise UnknownIdError("scenario_id", [scenario_id])
        group_id = row[0]
        if group_id is None:
            members = cur.execute(
                "SELECT id, prior_probability FROM scenarios WHERE id = %s FOR NO KEY UPDATE",
                (scenario_id,),
            ).fetchall()
        else:
            members = cur.execute(
                "SELECT id, prior_probability FROM scenarios WHERE group_id = %s"
                " ORDER BY id FOR NO KEY UPDATE",
                (group_id,),
            ).fetchall()
        priors: dict[int, float] = {int(r[0]): float(r[1]) for r in members}
        evidence: dict[int, list[float]] = {sid: [] for sid in priors}
        for sid, lr in cur.execute(
            "SELECT scenario_id, likelihood_ratio FROM scenario_evidence"
            " WHERE scenario_id = ANY(%s::bigint[])",
            (list(priors),),
        ):
            evidence[int(sid)].append(float(lr))
        if group_id is None:
            posteriors = {
                sid: formulas.bayes_update_standalone(prior, evidence[sid])
                for sid, prior in priors.items()
            }
        else:
            posteriors = formulas.bayes_update_group(priors, evidence)
        ids = list(posteriors)
        cur.execute(
            "UPDATE scenarios AS s SET probability = v.p, probability_updated_at = now()"
            " FROM unnest(%s::bigint[], %s::float8[]) AS v(id, p)"
            " WHERE s.id = v.id AND s.probability IS DISTINCT FROM v.p"
            " RETURNING s.id",
            (ids, [posteriors[i] for i in ids]),
        )
        return sorted(int(r[0]) for r in cur.fetchall())


def group_members(conn: Connection, scenario_id: int) -> list[int]:
    """The scenarios that share a normalisation with this one, sorted: its whole group, or
    just itself when standalone.

    These are the matrix columns a probability update can make stale. Enqueueing all of them,
    not only the ones :func:`update_probability` reported as changed, also repairs a column
    whose earlier follow-up enqueue was lost (the matrix upsert is a no-op when nothing changed).
    """
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT m.id FROM scenarios AS s JOIN scenarios AS m"
            " ON m.id = s.id OR m.group_id = s.group_id"
            " WHERE s.id = %s ORDER BY m.id",
            (scenario_id,),
        )
        .fetchall()
    )
    if not rows:
        raise UnknownIdError("scenario_id", [scenario_id])
    return [int(r[0]) for r in rows]


# --- writes used by the CLI and the demo -----------------------------------------------------


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
        _require_ids(conn, "assets", "asset_id", [asset_id])
        cur = conn.cursor(row_factory=tuple_row)
        cur.execute(
            "INSERT INTO asset_prices AS cur (asset_id, observed_on, price)"
            " SELECT %s, d, p FROM unnest(%s::date[], %s::float8[]) AS v(d, p)"
            " ON CONFLICT (asset_id, observed_on) DO UPDATE SET price = EXCLUDED.price"
            " WHERE cur.price IS DISTINCT FROM EXCLUDED.price",
            (asset_id, days, prices),
        )
        return max(cur.rowcount, 0)


# --- id listings for fan-out -----------------------------------------------------------------


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


# --- demo data -------------------------------------------------------------------------------

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
