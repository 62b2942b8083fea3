"""The operator's one typed settings object, read from the environment once at start-up.

A bad value fails the start with a message naming the variable and its allowed range. Each
default is written once, as the field's default; ``ENVIRONMENT`` adds only the variable's name
and range. tests/unit/test_operator_settings.py checks docs/operator.md's table against both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

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

    #: Per field: the environment variable that sets it, and the allowed range (low, high), of
    #: the field's type. The default is the field's own, above.
    ENVIRONMENT: ClassVar[Mapping[str, tuple[str, Any, Any]]] = {
        "sweep_seconds": ("FINEX_OPERATOR_SWEEP_SECONDS", 0.5, 3600),
        "grace_margin_seconds": ("FINEX_OPERATOR_GRACE_MARGIN_SECONDS", 0, 3600),
        "dlq_scan_limit": ("FINEX_OPERATOR_DLQ_SCAN_LIMIT", 1, 100000),
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            **{
                name: env_number(env, variable, getattr(defaults, name), low, high)
                for name, (variable, low, high) in cls.ENVIRONMENT.items()
            }
        )
