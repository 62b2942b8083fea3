"""Every value of the chart is documented in values.yaml and described by values.schema.json.

A value is documented by a `# --` comment right above its key (more comment lines may sit in
between). A mapping whose own key has no such comment is a section: each of its keys must be
documented instead. The schema must know every key of values.yaml, or Helm would refuse the
defaults (the schema forbids unknown keys, to catch typos).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "finex-workers"
VALUES = CHART / "values.yaml"


def _documented(lines: list[str], line_no: int) -> bool:
    """Whether a `# --` comment sits above line_no (0-based), across other comment lines."""
    i = line_no - 1
    while i >= 0 and lines[i].strip().startswith("#"):
        if lines[i].strip().startswith("# --"):
            return True
        i -= 1
    return False


def _undocumented(node: yaml.Node, lines: list[str], path: str) -> list[str]:
    missing: list[str] = []
    assert isinstance(node, yaml.MappingNode)
    for key, value in node.value:
        where = f"{path}.{key.value}" if path else key.value
        if _documented(lines, key.start_mark.line):
            continue
        if isinstance(value, yaml.MappingNode) and value.value:
            missing += _undocumented(value, lines, where)
        else:
            missing.append(where)
    return missing


def test_every_value_is_documented() -> None:
    text = VALUES.read_text()
    root = yaml.compose(text)
    assert _undocumented(root, text.splitlines(), "") == []


def _schema_gaps(values: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Keys of values.yaml that a closed schema object (additionalProperties: false) lacks."""
    gaps: list[str] = []
    if not isinstance(values, dict) or schema.get("additionalProperties") is not False:
        return gaps  # free-form objects (securityContext, resources, a pool spec) stay open
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        if key not in schema["properties"]:
            gaps.append(where)
        else:
            gaps += _schema_gaps(value, schema["properties"][key], where)
    return gaps


def _undescribed(schema: dict[str, Any], path: str) -> list[str]:
    missing: list[str] = []
    for key, sub in schema.get("properties", {}).items():
        where = f"{path}.{key}" if path else key
        if "description" not in sub and sub.get("type") != "object":
            missing.append(where)
        missing += _undescribed(sub, where)
    return missing


def test_schema_describes_every_value() -> None:
    values = yaml.safe_load(VALUES.read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert _schema_gaps(values, schema, "") == []
    assert _undescribed(schema, "") == []


def test_section_comments_are_not_mistaken_for_docs() -> None:
    text = "a:\n  # -- documented\n  b: 1\n  c: 2\n"
    assert _undocumented(yaml.compose(text), text.splitlines(), "") == ["a.c"]
