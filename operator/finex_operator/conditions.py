"""status.conditions per the Kubernetes API conventions, computed by a pure function.

lastTransitionTime changes only when a condition's status flips; reason, message and
observedGeneration follow the latest reconcile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum, unique
from typing import Any


@unique
class ConditionType(StrEnum):
    """The conditions a pool reports; their reasons are in finex_operator.reasons."""

    READY = "Ready"
    RESTARTING = "Restarting"
    DEGRADED = "Degraded"


@dataclass(frozen=True)
class Condition:
    """One condition as the planner decides it (without its transition time)."""

    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str  # CamelCase
    message: str = ""


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    current: Iterable[Condition],
    *,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """The new conditions list, keeping lastTransitionTime of those whose status is unchanged."""
    before = {str(c.get("type")): c for c in previous or ()}
    out = []
    for cond in current:
        old = before.get(cond.type)
        flipped = old is None or old.get("status") != cond.status
        out.append(
            {
                "type": str(cond.type),  # plain strings, not the StrEnums the planner passes
                "status": cond.status,
                "reason": str(cond.reason),
                "message": cond.message,
                "lastTransitionTime": now if flipped or old is None else old["lastTransitionTime"],
                "observedGeneration": generation,
            }
        )
    return out
