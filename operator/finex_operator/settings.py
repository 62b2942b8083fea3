"""The operator's one typed settings object, read from the environment once at start-up.

A bad value fails the start with a message naming the variable and its allowed range.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from finex_workers.settings import SettingsError


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number (allowed: {lo}..{hi})") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value} is out of range (allowed: {lo}..{hi})")
    return value


@dataclass(frozen=True)
class OperatorSettings:
    """How often the operator sweeps, and the margins it adds."""

    #: Seconds between stuck-job sweeps of each queue (control.clean_stuck_jobs).
    sweep_seconds: float = 10.0
    #: Added to the job timeout for a Pod's terminationGracePeriodSeconds, so a warm shutdown
    #: can finish the longest allowed job and still exit cleanly.
    grace_margin_seconds: int = 30
    #: DLQ entries read per queue and reconcile (the oldest first).
    dlq_scan_limit: int = 500

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if env is None else env
        return cls(
            sweep_seconds=_float(env, "FINEX_OPERATOR_SWEEP_SECONDS", 10.0, 0.5, 3600),
            grace_margin_seconds=int(
                _float(env, "FINEX_OPERATOR_GRACE_MARGIN_SECONDS", 30, 0, 3600)
            ),
            dlq_scan_limit=int(_float(env, "FINEX_OPERATOR_DLQ_SCAN_LIMIT", 500, 1, 100000)),
        )
