"""One default per field: the operator's spec parser agrees with the CRD's defaults.

The apiserver fills in the CRD's defaults, but only inside objects the user wrote: a pool without
`retry:` gets no `retry.maxRetries` from the apiserver, and the operator's own default
(operator/finex_operator/spec.py) is the one production sees. So both must be the same value.
These tests walk the CRD's openAPIV3Schema, so a field added to the CRD with a default is
covered without touching this file.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from finex_operator.spec import parse_spec

CRD = Path(__file__).parents[2] / "crds" / "finexworkerpools.yaml"

#: The required fields only: what a user must write, and nothing the schema defaults.
MINIMAL_SPEC: dict[str, Any] = {
    "image": "finex-workers:0.1.0",
    "queues": [{"name": "growth"}],
    "redis": {"urlSecretRef": {"name": "finex", "key": "redis-url"}},
    "database": {"urlSecretRef": {"name": "finex", "key": "database-url"}, "connectionBudget": 40},
}


def spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    [version] = [v for v in crd["spec"]["versions"] if v.get("storage")]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def _has_default(schema: dict[str, Any]) -> bool:
    """Whether the schema or anything under it declares a default."""
    if "default" in schema:
        return True
    children = list(schema.get("properties", {}).values())
    if "items" in schema:
        children.append(schema["items"])
    return any(_has_default(child) for child in children)


def with_empty_objects(body: Any, schema: dict[str, Any]) -> Any:
    """body plus `{}` for every absent object that holds defaults, recursively.

    An empty object is where the apiserver's defaults land; without it, the CRD's defaults
    below it never apply and the comparison would test nothing.
    """
    body = copy.deepcopy(body)
    if isinstance(body, dict):
        for name, sub in schema.get("properties", {}).items():
            absent = name not in body and "default" not in sub
            if absent and sub.get("type") == "object" and _has_default(sub):
                body[name] = {}
            if name in body:
                body[name] = with_empty_objects(body[name], sub)
    elif isinstance(body, list) and "items" in schema:
        body = [with_empty_objects(item, schema["items"]) for item in body]
    return body


def apply_crd_defaults(body: Any, schema: dict[str, Any]) -> Any:
    """What the apiserver's structural defaulting makes of body: each absent property with a
    default gets it, inside every object present (and every array item)."""
    body = copy.deepcopy(body)
    if isinstance(body, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in body and "default" in sub:
                body[name] = copy.deepcopy(sub["default"])
            if name in body:
                body[name] = apply_crd_defaults(body[name], sub)
    elif isinstance(body, list) and "items" in schema:
        body = [apply_crd_defaults(item, schema["items"]) for item in body]
    return body


def defaults(schema: dict[str, Any], path: tuple[str | int, ...] = ()) -> Iterator[tuple]:
    """(path, default, schema) of every default in the schema; array items are at index 0."""
    for name, sub in schema.get("properties", {}).items():
        if "default" in sub:
            yield (*path, name), sub["default"], sub
        yield from defaults(sub, (*path, name))
    if "items" in schema:
        yield from defaults(schema["items"], (*path, 0))


def differences(ours: Any, theirs: Any, path: str = "spec") -> list[str]:
    """Each field of two parsed specs that differs, named by its attribute path."""
    if dataclasses.is_dataclass(ours) and dataclasses.is_dataclass(theirs):
        out: list[str] = []
        for f in dataclasses.fields(ours):
            out += differences(getattr(ours, f.name), getattr(theirs, f.name), f"{path}.{f.name}")
        return out
    if isinstance(ours, tuple) and isinstance(theirs, tuple) and len(ours) == len(theirs):
        return [
            d
            for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
            for d in differences(a, b, f"{path}[{i}]")
        ]
    return (
        []
        if ours == theirs
        else [f"{path}: spec.py gives {ours!r}, the CRD's default gives {theirs!r}"]
    )


def _other_value(default: Any, schema: dict[str, Any]) -> Any:
    """A valid value other than the default, to see that the parser reads the field."""
    if "enum" in schema:
        return next(v for v in schema["enum"] if v != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default - 1 if default + 1 > schema.get("maximum", default + 1) else default + 1
    if isinstance(default, list):
        return [*default, *default[-1:]] if default else [1]
    raise AssertionError(f"no other value known for a default of {default!r}; extend _other_value")


def _set(body: Any, path: tuple[str | int, ...], value: Any) -> Any:
    body = copy.deepcopy(body)
    node = body
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return body


def test_the_schema_has_defaults_to_compare() -> None:
    found = [".".join(map(str, path)) for path, _, _ in defaults(spec_schema())]
    # A guard against a walker that finds nothing (a moved schema): these must be among them.
    assert {"jobTimeoutSeconds", "retry.maxRetries", "dlq.backoffSeconds"} <= set(found)
    assert "queues.0.autoscale.jobsPerReplica" in found


@pytest.mark.parametrize("with_autoscale", [False, True], ids=["fixed", "autoscale"])
def test_the_parser_defaults_every_field_as_the_crd_does(with_autoscale: bool) -> None:
    # ours: what the parser makes of a pool that leaves out every optional field and object
    # (the apiserver defaults nothing inside an absent object, so this is what production sees);
    # theirs: the same pool with every object present and the CRD's defaults filled in.
    schema = spec_schema()
    body = copy.deepcopy(MINIMAL_SPEC)
    if with_autoscale:  # autoscale's presence means something, so its defaults get their own run
        body["queues"][0].update(autoscale={}, maxReplicas=4)
    ours = parse_spec(body)
    filled = apply_crd_defaults(with_empty_objects(body, schema), schema)
    if not with_autoscale:
        filled["queues"][0].pop("autoscale", None)
    assert differences(ours, parse_spec(filled)) == []


@pytest.mark.parametrize(
    "path",
    [p for p, _, _ in defaults(spec_schema())],
    ids=lambda p: ".".join(map(str, p)),
)
def test_the_parser_reads_every_defaulted_field(path: tuple[str | int, ...]) -> None:
    # A CRD field with a default that the parser never reads would make the comparison above
    # pass vacuously; a value other than the default must change the parsed spec.
    schema = spec_schema()
    body = copy.deepcopy(MINIMAL_SPEC)
    body["queues"][0].update(autoscale={}, maxReplicas=4)
    body = apply_crd_defaults(with_empty_objects(body, schema), schema)
    [(default, sub)] = [(d, s) for p, d, s in defaults(schema) if p == path]
    changed = _set(body, path, _other_value(default, sub))
    assert parse_spec(changed) != parse_spec(body), (
        f"spec.py ignores spec.{'.'.join(map(str, path))}"
    )


def _as_written(value: Any) -> str:
    """A default as docs/operator.md writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def _doc_defaults() -> dict[str, str]:
    """docs/operator.md's spec table: field -> the default it states.

    A row of one field says `default V`; a row of several says each one's in parentheses, in
    the order of the fields.
    """
    text = (Path(__file__).parents[2] / "docs" / "operator.md").read_text()
    stated: dict[str, str] = {}
    for first, second in re.findall(r"^\| (`[^|]*`) \| ([^|]*) \|", text, re.M):
        # `retry.intervals[]` names the list itself: its default is the whole list.
        fields = [f.removesuffix("[]") for f in re.findall(r"`([^`]+)`", first)]
        if len(fields) == 1:
            said = re.search(r"default (\S+?)(?:;|$|\s)", second)
            if said:
                stated[fields[0]] = said.group(1)
        else:
            for name, value in zip(fields, re.findall(r"\(([^)]*)\)", second), strict=False):
                stated[name] = value
    return stated


def test_the_operator_docs_state_the_crds_defaults() -> None:
    stated = _doc_defaults()
    for path, default, _ in defaults(spec_schema()):
        name = ".".join("[]" if part == 0 else str(part) for part in path).replace(".[]", "[]")
        assert name in stated, f"docs/operator.md's spec table gives no default for {name}"
        assert stated[name] == _as_written(default), (
            f"docs/operator.md says {name} defaults to {stated[name]}, the CRD {default!r}"
        )
