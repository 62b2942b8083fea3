"""The pure formulas against values worked out by hand in each test."""

from __future__ import annotations

import math
import pickle

import pytest

from finex_workers.core import formulas
from finex_workers.core.errors import (
    FinexError,
    InsufficientDataError,
    InvalidValueError,
    PayloadError,
    UnknownIdError,
)

LN11 = math.log(1.1)


def test_log_returns_of_steady_ten_percent_rise() -> None:
    assert formulas.log_returns([100, 110, 121]) == pytest.approx([LN11, LN11], rel=1e-15)


def test_log_returns_down_then_up() -> None:
    # 100 -> 50 is ln(1/2), 50 -> 100 is ln 2: they cancel, as log returns should.
    r = formulas.log_returns([100, 50, 100])
    assert r == pytest.approx([-math.log(2), math.log(2)], rel=1e-15)
    assert sum(r) == pytest.approx(0.0, abs=1e-15)


def test_annualised_growth_is_mean_log_return_times_252() -> None:
    assert formulas.annualised_growth([100, 110, 121]) == pytest.approx(LN11 * 252, rel=1e-14)
    # Two returns ln 2 and 0: mean ln(2)/2, weekly data (52 a year).
    assert formulas.annualised_growth([1, 2, 2], periods_per_year=52) == pytest.approx(
        math.log(2) / 2 * 52, rel=1e-14
    )


def test_annualised_growth_needs_two_prices() -> None:
    with pytest.raises(InsufficientDataError, match="at least 2 prices"):
        formulas.annualised_growth([100])
    with pytest.raises(InsufficientDataError):
        formulas.annualised_growth([])


def test_ewma_volatility_two_returns() -> None:
    # Prices 100 -> 110 -> 99: r1 = ln 1.1, r2 = ln 0.9.
    r1, r2 = math.log(1.1), math.log(0.9)
    var = 0.94 * r1**2 + 0.06 * r2**2  # seeded with r1^2, one update with r2
    assert formulas.ewma_volatility([100, 110, 99]) == pytest.approx(
        math.sqrt(252 * var), rel=1e-14
    )


def test_ewma_volatility_three_returns_custom_lambda() -> None:
    prices = [100.0, 102.0, 101.0, 105.0]
    r1, r2, r3 = math.log(1.02), math.log(101 / 102), math.log(105 / 101)
    lam = 0.5
    s1 = r1**2
    s2 = 0.5 * s1 + 0.5 * r2**2
    s3 = 0.5 * s2 + 0.5 * r3**2
    assert formulas.ewma_volatility(prices, lam=lam, periods_per_year=12) == pytest.approx(
        math.sqrt(12 * s3), rel=1e-14
    )


def test_ewma_volatility_of_constant_growth_is_the_return_itself() -> None:
    # Every return ln 1.1: the variance stays ln(1.1)^2 through each update.
    assert formulas.ewma_volatility([100, 110, 121, 133.1]) == pytest.approx(
        LN11 * math.sqrt(252), rel=1e-12
    )


def test_ewma_volatility_needs_three_prices() -> None:
    with pytest.raises(InsufficientDataError, match="at least 3 prices"):
        formulas.ewma_volatility([100, 110])


@pytest.mark.parametrize("bad", [0.0, -5.0, math.nan, math.inf])
def test_prices_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(InvalidValueError, match=r"prices\[1\]"):
        formulas.log_returns([100.0, bad, 100.0])


@pytest.mark.parametrize("lam", [0.0, 1.0, -0.1])
def test_lambda_must_be_inside_unit_interval(lam: float) -> None:
    with pytest.raises(InvalidValueError, match="lam"):
        formulas.ewma_volatility([1, 2, 3], lam=lam)


def test_standalone_bayes_prior_point_two_lr_four_is_one_half() -> None:
    # Prior odds 0.2/0.8 = 0.25; times 4 is 1; odds 1 is probability 0.5.
    assert formulas.bayes_update_standalone(0.2, [4.0]) == pytest.approx(0.5, rel=1e-15)


def test_standalone_bayes_evidence_multiplies() -> None:
    # Prior 0.5 (odds 1), LRs 2 and 3: odds 6, probability 6/7.
    assert formulas.bayes_update_standalone(0.5, [2.0, 3.0]) == pytest.approx(6 / 7, rel=1e-15)
    # Evidence against: odds 1 * 0.25 = 0.25 -> 0.2.
    assert formulas.bayes_update_standalone(0.5, [0.25]) == pytest.approx(0.2, rel=1e-15)


def test_standalone_bayes_without_evidence_returns_the_prior_exactly() -> None:
    assert formulas.bayes_update_standalone(0.2, []) == 0.2
    assert formulas.bayes_update_standalone(0.3, [2.0, 0.5]) == 0.3


def test_standalone_bayes_is_stable_for_overwhelming_evidence() -> None:
    # 1000 LRs of 1e10 would overflow the odds (1e10000); log-odds stays finite.
    assert formulas.bayes_update_standalone(0.01, [1e10] * 1000) == 1.0
    assert formulas.bayes_update_standalone(0.99, [1e-10] * 1000) == 0.0


@pytest.mark.parametrize("lr", [0.0, -1.0, math.nan, math.inf])
def test_likelihood_ratio_must_be_positive_and_finite(lr: float) -> None:
    with pytest.raises(InvalidValueError, match="likelihood_ratios"):
        formulas.bayes_update_standalone(0.5, [2.0, lr])


@pytest.mark.parametrize("prior", [0.0, 1.0, -0.1, 1.5])
def test_standalone_prior_must_be_strictly_between_0_and_1(prior: float) -> None:
    with pytest.raises(InvalidValueError, match="prior"):
        formulas.bayes_update_standalone(prior, [2.0])


def test_group_bayes_renormalises() -> None:
    # prior * LR: 0.5*1, 0.3*2, 0.2*1 = 0.5, 0.6, 0.2; total 1.3.
    post = formulas.bayes_update_group(
        {"hike": 0.5, "hold": 0.3, "cut": 0.2}, {"hike": [1.0], "hold": [2.0], "cut": [1.0]}
    )
    assert post == pytest.approx({"hike": 0.5 / 1.3, "hold": 0.6 / 1.3, "cut": 0.2 / 1.3})
    assert math.fsum(post.values()) == pytest.approx(1.0, rel=1e-15)


def test_group_bayes_missing_evidence_means_lr_one() -> None:
    post = formulas.bayes_update_group({1: 0.5, 2: 0.3, 3: 0.2}, {2: [2.0]})
    assert post == pytest.approx({1: 0.5 / 1.3, 2: 0.6 / 1.3, 3: 0.2 / 1.3})


def test_group_bayes_without_evidence_keeps_priors_that_sum_to_one_exactly() -> None:
    priors = {1: 0.25, 2: 0.5, 3: 0.25}
    assert formulas.bayes_update_group(priors, {}) == priors


def test_group_bayes_treats_the_group_as_exhaustive() -> None:
    # Priors sum to 0.8: the posteriors are scaled to sum to 1 (0.4/0.8, 0.4/0.8).
    assert formulas.bayes_update_group({1: 0.4, 2: 0.4}, {}) == pytest.approx({1: 0.5, 2: 0.5})


def test_group_bayes_is_stable_for_overwhelming_evidence() -> None:
    post = formulas.bayes_update_group({1: 0.5, 2: 0.5}, {1: [1e300, 1e300, 1e300]})
    assert post == {1: 1.0, 2: 0.0}


def test_group_bayes_rejects_evidence_outside_the_group() -> None:
    with pytest.raises(InvalidValueError, match="not in the group"):
        formulas.bayes_update_group({1: 0.5}, {2: [2.0]})


def test_group_bayes_rejects_bad_lr() -> None:
    with pytest.raises(InvalidValueError, match="likelihood_ratios"):
        formulas.bayes_update_group({1: 0.5, 2: 0.5}, {1: [0.0]})


def test_volatility_scale() -> None:
    assert formulas.volatility_scale(0.3, 0.2) == pytest.approx(1.5, rel=1e-15)
    assert formulas.volatility_scale(None, 0.2) == 1.0
    assert formulas.volatility_scale(2.0, 0.2) == 4.0  # 10x clamped to the upper bound
    assert formulas.volatility_scale(0.0, 0.2) == 0.25  # 0x clamped to the lower bound
    assert formulas.volatility_scale(1.0, 0.5, lo=0.5, hi=1.5) == 1.5


def test_volatility_scale_rejects_non_positive_reference() -> None:
    with pytest.raises(InvalidValueError, match="reference_vol"):
        formulas.volatility_scale(0.3, 0.0)


def test_impact_and_weighted_impact() -> None:
    # 1,000,000 * -0.3 * 1.5 = -450,000; at probability 0.25 that is -112,500.
    value = formulas.impact(1_000_000.0, -0.3, 1.5)
    assert value == pytest.approx(-450_000.0, rel=1e-15)
    assert formulas.weighted_impact(value, 0.25) == pytest.approx(-112_500.0, rel=1e-15)
    # A short gains from a fall.
    assert formulas.impact(-200.0, -0.5, 1.0) == pytest.approx(100.0)


def test_error_hierarchy() -> None:
    for cls in (UnknownIdError, InsufficientDataError, InvalidValueError):
        assert issubclass(cls, PayloadError)
    assert issubclass(PayloadError, FinexError)
    assert issubclass(PayloadError, ValueError)


def test_unknown_id_error_names_field_and_ids_and_pickles() -> None:
    err = UnknownIdError("asset_id", [999999, 5])
    assert str(err) == "unknown asset_id(s): [5, 999999]"
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, UnknownIdError)
    assert str(back) == str(err)
    assert back.field == "asset_id"
    assert back.ids == [5, 999999]
    plain = pickle.loads(pickle.dumps(InsufficientDataError("asset_id 3 has 1 price(s)")))
    assert str(plain) == "asset_id 3 has 1 price(s)"
