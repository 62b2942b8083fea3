"""OperatorSettings: one default per field, and the docs and chart say the same."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

from finex_operator.settings import OperatorSettings

ROOT = Path(__file__).parents[2]


def test_every_field_has_one_variable_and_the_empty_environment_gives_the_defaults() -> None:
    fields = {f.name for f in dataclasses.fields(OperatorSettings)}
    assert set(OperatorSettings.ENVIRONMENT) == fields
    assert OperatorSettings.from_env({}) == OperatorSettings()


def test_each_range_holds_its_default_and_an_integer_field_has_integer_bounds() -> None:
    defaults = OperatorSettings()
    for name, (variable, low, high) in OperatorSettings.ENVIRONMENT.items():
        default = getattr(defaults, name)
        assert low <= default <= high, variable
        if isinstance(default, int):  # env_number parses by the default's type
            assert isinstance(low, int), variable
            assert isinstance(high, int), variable


def _doc_rows() -> dict[str, tuple[float, float, float]]:
    text = (ROOT / "docs" / "operator.md").read_text()
    rows = re.findall(
        r"^\| `(FINEX_OPERATOR_\w+)` \| ([\d.]+) \| ([\d.]+)\.\.([\d.]+) \|", text, re.M
    )
    return {var: (float(d), float(lo), float(hi)) for var, d, lo, hi in rows}


def test_the_operator_docs_table_states_each_default_and_range() -> None:
    defaults = OperatorSettings()
    expected = {
        variable: (float(getattr(defaults, name)), float(low), float(high))
        for name, (variable, low, high) in OperatorSettings.ENVIRONMENT.items()
    }
    assert _doc_rows() == expected


def test_the_charts_values_comment_states_each_default_and_range() -> None:
    values = (ROOT / "charts" / "finex-workers" / "values.yaml").read_text()
    yaml.safe_load(values)  # still a valid file
    comments = " ".join(
        line.strip().lstrip("#").strip()
        for line in values.splitlines()
        if line.strip().startswith("#")
    )
    defaults = OperatorSettings()
    for name, (variable, low, high) in OperatorSettings.ENVIRONMENT.items():
        said = re.search(rf"{variable} \(([^)]*)\)", comments)
        assert said, f"values.yaml does not describe {variable}"
        numbers = re.search(r"([\d.]+)\.\.([\d.]+), default ([\d.]+)", said.group(1))
        assert numbers, f"values.yaml gives no range and default for {variable}: {said.group(1)}"
        assert tuple(float(n) for n in numbers.groups()) == (
            float(low),
            float(high),
            float(getattr(defaults, name)),
        ), variable
