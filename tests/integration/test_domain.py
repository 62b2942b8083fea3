"""Domain operations on a real, migrated PostgreSQL: values, idempotency, errors, seeding."""

from __future__ import annotations

import math
import threading
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest

from finex_workers import domain
from finex_workers.core import formulas
from finex_workers.core.errors import (
    AlreadySeededError,
    InsufficientDataError,
    InvalidValueError,
    UnknownIdError,
)

Conn = psycopg.Connection[Any]


def _one(db: Conn, query: str, *params: object) -> Any:
    row = db.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def add_asset(
    db: Conn, symbol: str, asset_class: str, exposure: float, volatility: float | None = None
) -> int:
    return int(
        _one(
            db,
            "INSERT INTO assets (symbol, asset_class, exposure, volatility)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            symbol,
            asset_class,
            exposure,
            volatility,
        )
    )


def add_scenario(
    db: Conn, name: str, prior: float, group_id: int | None = None, probability: float | None = None
) -> int:
    p = prior if probability is None else probability
    return int(
        _one(
            db,
            "INSERT INTO scenarios (name, group_id, prior_probability, probability)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            name,
            group_id,
            prior,
            p,
        )
    )


def add_shock(db: Conn, scenario_id: int, asset_class: str, shock: float, ref_vol: float) -> None:
    db.execute(
        "INSERT INTO scenario_shocks VALUES (%s, %s, %s, %s)",
        (scenario_id, asset_class, shock, ref_vol),
    )


def matrix(db: Conn) -> dict[tuple[int, int], tuple[float, ...]]:
    rows = db.execute(
        "SELECT asset_id, scenario_id, shock, vol_scale, probability, impact,"
        " weighted_impact, computed_at FROM impact_scores"
    ).fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


@pytest.fixture
def small_book(db: Conn) -> dict[str, int]:
    """Two assets x two scenarios, values chosen so the products are easy by hand."""
    ids = {
        "eq": add_asset(db, "EQ1", "equity", 1_000_000.0, volatility=0.3),
        "bd": add_asset(db, "BD1", "bond", -200_000.0),  # short, no volatility yet
        "crash": add_scenario(db, "crash", 0.25),
        "calm": add_scenario(db, "calm", 0.5),
    }
    add_shock(db, ids["crash"], "equity", -0.3, 0.2)
    add_shock(db, ids["crash"], "bond", -0.1, 0.05)
    # "calm" has a shock for bonds only, so equity x calm has no shock.
    add_shock(db, ids["calm"], "bond", 0.02, 0.05)
    return ids


def test_matrix_values_match_hand_computation(db: Conn, small_book: dict[str, int]) -> None:
    assert domain.compute_matrix(db) == 4
    m = matrix(db)
    eq, bd, crash, calm = (small_book[k] for k in ("eq", "bd", "crash", "calm"))
    # Equity x crash: vol scale 0.3/0.2 = 1.5; 1,000,000 * -0.3 * 1.5 = -450,000; * 0.25.
    shock, vol_scale, prob, impact, weighted, _ = m[(eq, crash)]
    assert (shock, prob) == (-0.3, 0.25)
    assert vol_scale == pytest.approx(1.5, rel=1e-15)
    assert impact == pytest.approx(-450_000.0, rel=1e-15)
    assert weighted == pytest.approx(-112_500.0, rel=1e-15)
    # Equity x calm: no equity shock -> impact 0, vol scale 1.
    assert m[(eq, calm)][:5] == (0.0, 1.0, 0.5, 0.0, 0.0)
    # Bond x crash: no volatility -> scale 1; -200,000 * -0.1 = +20,000 (the short gains).
    assert m[(bd, crash)][1] == 1.0
    assert m[(bd, crash)][3] == pytest.approx(20_000.0, rel=1e-15)
    assert m[(bd, crash)][4] == pytest.approx(5_000.0, rel=1e-15)
    # Bond x calm: -200,000 * 0.02 = -4,000; * 0.5 = -2,000.
    assert m[(bd, calm)][3] == pytest.approx(-4_000.0, rel=1e-15)
    assert m[(bd, calm)][4] == pytest.approx(-2_000.0, rel=1e-15)


def test_matrix_clamps_volatility_scale(db: Conn, small_book: dict[str, int]) -> None:
    db.execute("UPDATE assets SET volatility = 2.0 WHERE id = %s", (small_book["eq"],))
    domain.compute_matrix(db, asset_ids=[small_book["eq"]])
    row = matrix(db)[(small_book["eq"], small_book["crash"])]
    # 2.0 / 0.2 = 10, clamped to 4: 1,000,000 * -0.3 * 4 = -1,200,000.
    assert row[1] == 4.0
    assert row[3] == pytest.approx(-1_200_000.0, rel=1e-15)


def test_matrix_twice_changes_nothing(db: Conn, small_book: dict[str, int]) -> None:
    assert domain.compute_matrix(db) == 4
    before = matrix(db)
    assert domain.compute_matrix(db) == 0
    assert matrix(db) == before  # computed_at included: no row was rewritten


def test_matrix_rewrites_only_changed_cells(db: Conn, small_book: dict[str, int]) -> None:
    domain.compute_matrix(db)
    before = matrix(db)
    db.execute("UPDATE scenarios SET probability = 0.4 WHERE id = %s", (small_book["crash"],))
    assert domain.compute_matrix(db) == 2  # the crash column: both assets
    after = matrix(db)
    assert after[(small_book["eq"], small_book["crash"])][4] == pytest.approx(-180_000.0)
    assert (
        after[(small_book["eq"], small_book["calm"])]
        == before[(small_book["eq"], small_book["calm"])]
    )


def test_matrix_chunk_touches_only_its_rows(db: Conn, small_book: dict[str, int]) -> None:
    assert domain.compute_matrix(db, asset_ids=[small_book["bd"]]) == 2
    assert {k[0] for k in matrix(db)} == {small_book["bd"]}
    assert domain.compute_matrix(db, scenario_ids=[small_book["calm"]]) == 1  # eq x calm is new
    assert set(matrix(db)) == {
        (small_book["bd"], small_book["crash"]),
        (small_book["bd"], small_book["calm"]),
        (small_book["eq"], small_book["calm"]),
    }
    assert domain.compute_matrix(db, asset_ids=[], scenario_ids=None) == 0


def test_matrix_unknown_ids(db: Conn, small_book: dict[str, int]) -> None:
    with pytest.raises(UnknownIdError, match=r"unknown asset_id\(s\): \[999998, 999999\]"):
        domain.compute_matrix(db, asset_ids=[small_book["eq"], 999999, 999998])
    with pytest.raises(UnknownIdError, match=r"unknown scenario_id\(s\): \[424242\]") as info:
        domain.compute_matrix(db, scenario_ids=[424242])
    assert info.value.field == "scenario_id"
    assert matrix(db) == {}  # nothing written before the check failed


def test_matrix_agrees_with_the_pure_formulas_bit_for_bit(db: Conn) -> None:
    summary = domain.seed(db, assets=30, scenarios=8, days=40)
    for aid in [a for chunk in domain.asset_ids(db, chunk=100) for a in chunk]:
        domain.update_growth(db, aid)
    assert domain.compute_matrix(db) == 30 * summary.scenarios
    shocks = {(r[0], r[1]): (r[2], r[3]) for r in db.execute("SELECT * FROM scenario_shocks")}
    assets = {
        r[0]: r[1:] for r in db.execute("SELECT id, asset_class, exposure, volatility FROM assets")
    }
    probs = dict(db.execute("SELECT id, probability FROM scenarios").fetchall())
    for (aid, sid), (_, vol_scale, _, impact, weighted, _) in matrix(db).items():
        asset_class, exposure, vol = assets[aid]
        shock, ref = shocks.get((sid, asset_class), (0.0, None))
        want_scale = 1.0 if ref is None else formulas.volatility_scale(vol, ref)
        want = formulas.impact(exposure, shock, want_scale)
        assert vol_scale == want_scale
        assert impact == want
        assert weighted == formulas.weighted_impact(want, probs[sid])


def _prices(db: Conn, asset_id: int, values: list[float]) -> None:
    start = date(2024, 1, 1)
    domain.add_prices(db, asset_id, [(start + timedelta(days=i), p) for i, p in enumerate(values)])


def test_update_growth_on_a_hand_made_series(db: Conn) -> None:
    aid = add_asset(db, "G1", "equity", 1.0)
    _prices(db, aid, [100.0, 110.0, 121.0])
    result = domain.update_growth(db, aid)
    ln11 = math.log(1.1)
    assert result.changed
    assert result.observations == 3
    assert result.growth_rate == pytest.approx(ln11 * 252, rel=1e-14)
    # Both returns ln 1.1: EWMA variance stays ln(1.1)^2.
    assert result.volatility == pytest.approx(ln11 * math.sqrt(252), rel=1e-12)
    stored = db.execute(
        "SELECT growth_rate, volatility, growth_updated_at FROM assets WHERE id = %s", (aid,)
    ).fetchone()
    assert stored is not None
    assert stored[:2] == (result.growth_rate, result.volatility)
    again = domain.update_growth(db, aid)
    assert not again.changed
    assert db.execute("SELECT growth_updated_at FROM assets WHERE id = %s", (aid,)).fetchone() == (
        stored[2],
    )


def test_update_growth_uses_only_the_window(db: Conn) -> None:
    aid = add_asset(db, "G2", "equity", 1.0)
    # An old crash, then a steady 10% rise; a 2-return window sees only the rise.
    _prices(db, aid, [500.0, 100.0, 110.0, 121.0])
    result = domain.update_growth(db, aid, window=2)
    assert result.observations == 3
    assert result.growth_rate == pytest.approx(math.log(1.1) * 252, rel=1e-14)


def test_update_growth_errors(db: Conn) -> None:
    aid = add_asset(db, "G3", "bond", 1.0)
    _prices(db, aid, [100.0, 101.0])
    with pytest.raises(InsufficientDataError, match=f"asset_id {aid} has 2 price"):
        domain.update_growth(db, aid)
    with pytest.raises(UnknownIdError, match=r"asset_id\(s\): \[999999\]"):
        domain.update_growth(db, 999999)


def test_update_probability_standalone(db: Conn) -> None:
    sid = add_scenario(db, "s", 0.2)
    assert domain.update_probability(db, sid) == []  # no evidence: stays the prior
    domain.add_evidence(db, sid, 4.0, "strong signal")
    assert domain.update_probability(db, sid) == [sid]
    # Odds 0.25 * 4 = 1 -> 0.5.
    assert _one(db, "SELECT probability FROM scenarios WHERE id = %s", sid) == pytest.approx(0.5)
    assert domain.update_probability(db, sid) == []


def test_update_probability_renormalises_the_group(db: Conn) -> None:
    gid = int(_one(db, "INSERT INTO scenario_groups (name) VALUES ('rates') RETURNING id"))
    hike = add_scenario(db, "hike", 0.5, gid)
    hold = add_scenario(db, "hold", 0.3, gid)
    cut = add_scenario(db, "cut", 0.2, gid)
    other = add_scenario(db, "standalone", 0.1)
    domain.add_evidence(db, hold, 2.0)
    # Evidence on "hold" moves every member: 0.5, 0.6, 0.2 over 1.3.
    assert domain.update_probability(db, hold) == [hike, hold, cut]
    probs = dict(db.execute("SELECT id, probability FROM scenarios").fetchall())
    assert probs[hike] == pytest.approx(0.5 / 1.3)
    assert probs[hold] == pytest.approx(0.6 / 1.3)
    assert probs[cut] == pytest.approx(0.2 / 1.3)
    assert probs[other] == 0.1
    # Any member's update recomputes the same group: nothing changes now.
    assert domain.update_probability(db, cut) == []
    assert domain.group_members(db, cut) == [hike, hold, cut]
    assert domain.group_members(db, other) == [other]


def test_update_probability_unknown(db: Conn) -> None:
    with pytest.raises(UnknownIdError, match=r"scenario_id\(s\): \[777\]"):
        domain.update_probability(db, 777)
    with pytest.raises(UnknownIdError):
        domain.group_members(db, 777)


def test_add_evidence_and_prices_validate(db: Conn) -> None:
    sid = add_scenario(db, "s", 0.2)
    aid = add_asset(db, "A", "fx", 1.0)
    with pytest.raises(InvalidValueError, match="likelihood_ratio"):
        domain.add_evidence(db, sid, 0.0)
    with pytest.raises(UnknownIdError, match="scenario_id"):
        domain.add_evidence(db, 999, 2.0)
    with pytest.raises(InvalidValueError, match="price"):
        domain.add_prices(db, aid, [(date(2024, 1, 1), -1.0)])
    with pytest.raises(InvalidValueError, match="same observed_on"):
        domain.add_prices(db, aid, [(date(2024, 1, 1), 1.0), (date(2024, 1, 1), 2.0)])
    with pytest.raises(UnknownIdError, match="asset_id"):
        domain.add_prices(db, 999, [(date(2024, 1, 1), 1.0)])
    rows = [(date(2024, 1, 1), 1.0), (date(2024, 1, 2), 2.0)]
    assert domain.add_prices(db, aid, rows) == 2
    assert domain.add_prices(db, aid, rows) == 0
    assert domain.add_prices(db, aid, [(date(2024, 1, 2), 2.5)]) == 1


def test_seed_counts_and_determinism(db: Conn, database_url: str) -> None:
    summary = domain.seed(db, assets=25, scenarios=10, days=30)
    assert summary.assets == 25
    assert summary.prices == 25 * 30
    assert summary.scenarios == 10
    assert summary.scenario_groups == 2  # rates and cycle both fit whole in 10
    counts = {
        t: _one(db, f"SELECT count(*) FROM {t}")
        for t in (
            "assets",
            "asset_prices",
            "scenarios",
            "scenario_groups",
            "scenario_shocks",
            "scenario_evidence",
        )
    }
    assert counts == {
        "assets": 25,
        "asset_prices": 750,
        "scenarios": 10,
        "scenario_groups": 2,
        "scenario_shocks": summary.shocks,
        "scenario_evidence": summary.evidence,
    }
    # Groups' priors sum to 1; every day is a weekday.
    for total in db.execute(
        "SELECT sum(prior_probability) FROM scenarios WHERE group_id IS NOT NULL GROUP BY group_id"
    ):
        assert total[0] == pytest.approx(1.0)
    assert (
        _one(db, "SELECT count(*) FROM asset_prices WHERE extract(isodow FROM observed_on) > 5")
        == 0
    )

    with pytest.raises(AlreadySeededError, match="replace=True"):
        domain.seed(db, assets=1, scenarios=1)
    snapshot = db.execute("SELECT * FROM asset_prices ORDER BY 1, 2").fetchall()
    again = domain.seed(db, assets=25, scenarios=10, days=30, replace=True)
    assert again == summary
    assert db.execute("SELECT * FROM asset_prices ORDER BY 1, 2").fetchall() == snapshot


def test_seed_small_sizes_keep_groups_whole(db: Conn) -> None:
    summary = domain.seed(db, assets=1, scenarios=2, days=5)
    assert (summary.scenarios, summary.scenario_groups) == (2, 0)
    summary = domain.seed(db, assets=1, scenarios=4, days=5, replace=True)
    assert (summary.scenarios, summary.scenario_groups) == (4, 1)


def test_id_listings(db: Conn) -> None:
    domain.seed(db, assets=7, scenarios=3, days=3)
    chunks = domain.asset_ids(db, chunk=3)
    assert [len(c) for c in chunks] == [3, 3, 1]
    flat = [a for c in chunks for a in c]
    assert flat == sorted(flat)
    assert domain.scenario_ids(db) == sorted(domain.scenario_ids(db))
    assert len(domain.scenario_ids(db)) == 3
    with pytest.raises(InvalidValueError, match="chunk"):
        domain.asset_ids(db, chunk=0)


def test_group_updates_serialise_but_evidence_still_flows(db: Conn, database_url: str) -> None:
    """While one update holds the group's rows, a second waits for it, then sees its result;
    adding evidence meanwhile is not blocked (the lock is FOR NO KEY UPDATE)."""
    gid = int(_one(db, "INSERT INTO scenario_groups (name) VALUES ('g') RETURNING id"))
    a = add_scenario(db, "a", 0.5, gid)
    b = add_scenario(db, "b", 0.5, gid)
    domain.add_evidence(db, a, 3.0)
    results: list[list[int]] = []
    with psycopg.connect(database_url, autocommit=True) as holder:
        with holder.transaction():
            assert domain.update_probability(holder, a) == [a, b]  # 0.75 / 0.25, uncommitted

            def second() -> None:
                with psycopg.connect(database_url, autocommit=True) as other:
                    results.append(domain.update_probability(other, b))

            thread = threading.Thread(target=second)
            thread.start()
            thread.join(timeout=0.5)
            assert thread.is_alive(), "the second update should wait for the group lock"
            domain.add_evidence(db, b, 1.0)  # LR 1: changes nothing, but must not block
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert results == [[]]  # it ran after the first committed and found nothing to change
    probs = dict(db.execute("SELECT id, probability FROM scenarios").fetchall())
    assert probs == {a: pytest.approx(0.75), b: pytest.approx(0.25)}
