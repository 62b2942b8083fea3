"""The operator's one typed settings object, read from the environment once at start-up.

A bad value fails the start with a message naming the variable and its allowed range.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from finex_workers.core.settings import env_number


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
            sweep_seconds=env_number(env, "FINEX_OPERATOR_SWEEP_SECONDS", 10.0, 0.5, 3600),
            grace_margin_seconds=env_number(
                env, "FINEX_OPERATOR_GRACE_MARGIN_SECONDS", 30, 0, 3600
            ),
            dlq_scan_limit=env_number(env, "FINEX_OPERATOR_DLQ_SCAN_LIMIT", 500, 1, 100000),
        )
