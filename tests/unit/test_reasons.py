"""The named reasons: CamelCase per the API conventions, unique, used, and documented."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import pytest

from finex_operator.planner import Phase
from finex_operator.reasons import ConditionReason, EventReason

ROOT = Path(__file__).parents[2]
CAMEL_CASE = re.compile(r"[A-Z][A-Za-z0-9]*")
ENUMS: list[type[StrEnum]] = [EventReason, ConditionReason, Phase]


@pytest.mark.parametrize("kind", ENUMS, ids=lambda k: k.__name__)
def test_reasons_are_camel_case_and_unique(kind: type[StrEnum]) -> None:
    values = [member.value for member in kind.__members__.values()]  # aliases included
    assert [v for v in values if not CAMEL_CASE.fullmatch(v)] == []
    assert len(values) == len(set(values))


def test_no_reason_is_also_a_phase_name() -> None:
    """While a restart runs, the Restarting condition's reason is the phase: keep them apart."""
    assert {p.value for p in Phase} & {r.value for r in [*EventReason, *ConditionReason]} == set()


@pytest.mark.parametrize("reason", [*EventReason, *ConditionReason], ids=str)
def test_every_reason_is_used(reason: EventReason | ConditionReason) -> None:
    code = "\n".join(
        path.read_text()
        for path in (ROOT / "operator" / "finex_operator").rglob("*.py")
        if path.name != "reasons.py"
    )
    assert f"{type(reason).__name__}.{reason.name}" in code


def test_docs_list_exactly_the_reasons() -> None:
    text = (ROOT / "docs" / "operator.md").read_text()
    section = text.split("## Events and condition reasons", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE))
    assert listed == {r.value for r in [*EventReason, *ConditionReason]}
