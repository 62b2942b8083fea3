"""The risk formulas as pure functions: the documented reference for every number we store.

Nothing here does I/O. Growth and probability jobs call these functions directly; the matrix job
computes the same arithmetic in one SQL statement (see :mod:`finex_workers.domain`), and the
integration tests check that both give the same numbers. docs/formulas.md explains the maths.

All inputs and outputs are IEEE doubles, like PostgreSQL's ``double precision``, so the SQL and
Python versions of :func:`volatility_scale` and :func:`impact` agree bit for bit as long as they
multiply in the same order. Sums use :func:`math.fsum`, which is correctly rounded and therefore
independent of the order rows come back from the database: recomputing with the same inputs
always gives the same bits, which is what makes the upserts idempotent.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

from finex_workers.core.errors import InsufficientDataError, InvalidValueError

K = TypeVar("K", bound=Hashable)

#: Trading days in a year: the usual annualisation factor for daily observations.
TRADING_DAYS_PER_YEAR = 252
#: RiskMetrics (J.P. Morgan/Reuters, 1996) decay factor for daily data.
RISKMETRICS_LAMBDA = 0.94
#: Fewest prices for a growth rate: two prices give one log return.
MIN_PRICES_GROWTH = 2
#: Fewest prices for a volatility: one EWMA step needs a seed return and one more return.
MIN_PRICES_VOLATILITY = 3
#: Bounds of the volatility scale, so one noisy estimate cannot blow a shock up or wipe it out.
VOL_SCALE_MIN = 0.25
VOL_SCALE_MAX = 4.0


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise InvalidValueError(f"{name} must be a finite number, got {value!r}")


def log_returns(prices: Sequence[float]) -> list[float]:
    """Continuously compounded returns ``r_t = ln(p_t / p_{t-1})``, oldest first.

    Log returns add up over time (the returns of two days sum to the two-day return), which is
    why growth and volatility are built from them. Prices must be positive and in date order.
    """
    if len(prices) < MIN_PRICES_GROWTH:
        raise InsufficientDataError(
            f"need at least {MIN_PRICES_GROWTH} prices for a return, got {len(prices)}"
        )
    for i, price in enumerate(prices):
        _check_finite(f"prices[{i}]", price)
        if price <= 0:
            raise InvalidValueError(f"prices[{i}] must be > 0, got {price!r}")
    return [math.log(cur / prev) for prev, cur in itertools.pairwise(prices)]


def annualised_growth(
    prices: Sequence[float], periods_per_year: int = TRADING_DAYS_PER_YEAR
) -> float:
    """Annualised log-return growth: ``mean(r_t) * periods_per_year``.

    The mean daily log return scaled to a year is the drift of the price's logarithm, so a price
    that rises 10% every day has growth ``ln(1.1) * 252``. Needs at least 2 prices.
    """
    returns = log_returns(prices)
    return math.fsum(returns) / len(returns) * periods_per_year


def ewma_volatility(
    prices: Sequence[float],
    lam: float = RISKMETRICS_LAMBDA,
    periods_per_year: int = TRADING_DAYS_PER_YEAR,
) -> float:
    """Annualised RiskMetrics EWMA volatility of the log returns.

    The variance is seeded with the first squared return, ``s_1^2 = r_1^2``, then updated with
    ``s_t^2 = lam * s_{t-1}^2 + (1 - lam) * r_t^2`` for every later return, so recent moves weigh
    more than old ones and the estimate reacts to regime changes. The result is
    ``sqrt(periods_per_year * s_T^2)``.

    Needs at least 3 prices (2 returns): with one return the "estimate" would just be that
    return's size, with no averaging at all. The mean return is taken as zero, as RiskMetrics
    does for daily data.
    """
    if not 0 < lam < 1:
        raise InvalidValueError(f"lam must be in (0, 1), got {lam!r}")
    if len(prices) < MIN_PRICES_VOLATILITY:
        raise InsufficientDataError(
            f"need at least {MIN_PRICES_VOLATILITY} prices for a volatility, got {len(prices)}"
        )
    returns = log_returns(prices)
    variance = returns[0] ** 2
    for r in returns[1:]:
        variance = lam * variance + (1 - lam) * r**2
    return math.sqrt(periods_per_year * variance)


def _log_likelihood(likelihood_ratios: Iterable[float], name: str) -> float:
    """Sum of ``ln(LR)``: independent pieces of evidence multiply, so their logs add."""
    logs = []
    for i, lr in enumerate(likelihood_ratios):
        _check_finite(f"{name}[{i}]", lr)
        if lr <= 0:
            raise InvalidValueError(f"{name}[{i}] must be > 0, got {lr!r}")
        logs.append(math.log(lr))
    return math.fsum(logs)


def _sigmoid(x: float) -> float:
    """``1 / (1 + e^-x)`` without overflow: only ever exponentiate a non-positive number."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def bayes_update_standalone(prior: float, likelihood_ratios: Iterable[float]) -> float:
    """Posterior of a yes/no scenario after independent evidence, via log-odds.

    Bayes' rule in odds form is ``posterior_odds = prior_odds * LR_1 * LR_2 * ...``, where
    ``LR = P(evidence | scenario) / P(evidence | not scenario)``. In logs that is
    ``logit(posterior) = logit(prior) + sum(ln LR_i)``, and the posterior is the sigmoid of it.
    Working in logs keeps many strong pieces of evidence from overflowing the odds.

    With no evidence (or evidence that nets to ``LR = 1``) the prior is returned unchanged, so a
    first recompute does not drift the stored probability by a rounding error.
    """
    _check_finite("prior", prior)
    if not 0 < prior < 1:
        raise InvalidValueError(f"prior must be in (0, 1), got {prior!r}")
    evidence = _log_likelihood(likelihood_ratios, "likelihood_ratios")
    if evidence == 0.0:
        return prior
    return _sigmoid(math.log(prior) - math.log1p(-prior) + evidence)


def bayes_update_group(
    priors: Mapping[K, float], likelihood_ratios: Mapping[K, Iterable[float]]
) -> dict[K, float]:
    """Posteriors of mutually exclusive scenarios after evidence on each of them.

    ``posterior_i = prior_i * prod(LR_i) / sum_j(prior_j * prod(LR_j))``: the softmax of
    ``ln prior_i + sum(ln LR_i)``. Scenarios without an entry in ``likelihood_ratios`` have no
    evidence (``LR = 1``).

    The normalisation treats the group as exhaustive: the posteriors always sum to 1, even when
    the priors do not. So a group whose priors sum to 0.8 reads as "one of these will happen",
    and its first update scales every probability by 1/0.8. Seed groups with priors that sum
    to 1 (as the demo data does) and the two views agree.

    For numerical stability the evidence term is shifted by its maximum before exponentiating
    (the log-sum-exp trick): ``w_i = prior_i * exp(L_i - max L)``. The largest weight is then a
    prior, never an overflow or underflow, and with no evidence ``w_i`` is exactly ``prior_i``.
    """
    unknown = set(likelihood_ratios) - set(priors)
    if unknown:
        raise InvalidValueError(f"likelihood_ratios for scenarios not in the group: {unknown}")
    if not priors:
        return {}
    evidence: dict[K, float] = {}
    for key, prior in priors.items():
        _check_finite(f"priors[{key!r}]", prior)
        if not 0 < prior <= 1:
            raise InvalidValueError(f"priors[{key!r}] must be in (0, 1], got {prior!r}")
        lrs = likelihood_ratios.get(key, ())
        evidence[key] = _log_likelihood(lrs, f"likelihood_ratios[{key!r}]")
    shift = max(evidence.values())
    weights = {key: priors[key] * math.exp(evidence[key] - shift) for key in priors}
    total = math.fsum(weights.values())
    return {key: weight / total for key, weight in weights.items()}


def volatility_scale(
    asset_vol: float | None,
    reference_vol: float,
    lo: float = VOL_SCALE_MIN,
    hi: float = VOL_SCALE_MAX,
) -> float:
    """How much bigger this asset's move is than the move the shock was calibrated for.

    A shock of -30% calibrated on an asset class with 20% volatility should hit a 30%-volatility
    asset harder: ``clamp(asset_vol / reference_vol, lo, hi)``. The clamp keeps a fresh or
    noisy volatility estimate from multiplying a shock by 50 or erasing it. An asset without a
    volatility yet (no growth run) takes the shock as calibrated: 1.0.
    """
    _check_finite("reference_vol", reference_vol)
    if reference_vol <= 0:
        raise InvalidValueError(f"reference_vol must be > 0, got {reference_vol!r}")
    if asset_vol is None:
        return 1.0
    _check_finite("asset_vol", asset_vol)
    return min(max(asset_vol / reference_vol, lo), hi)


def impact(exposure: float, shock: float, vol_scale: float) -> float:
    """Change in position value if the scenario happens: ``exposure * shock * vol_scale``.

    In the reporting currency; negative is a loss. A short position (negative exposure) gains
    from a negative shock. The multiplication order is fixed because the SQL repeats it.
    """
    return exposure * shock * vol_scale


def weighted_impact(impact_value: float, probability: float) -> float:
    """Expected impact: ``impact * probability``, the figure that ranks risks across scenarios."""
    return impact_value * probability
