"""The docs that restate the code say what the code does: the README's metric table and `finex`
synopsis, every printer-column list, and what a "live worker" is.

Each list here is read from the code (the metric definitions, the argparse parser, the CRD),
so a new metric, flag or column fails this test until the docs name it.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from finex_workers.cli import build_parser
from finex_workers.observability.metrics import QueueCollector, WorkerMetrics, build_info

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CRD = ROOT / "crds" / "finexworkerpools.yaml"
#: What a live worker is, in every place that counts them (control.state.live_workers).
LIVE = "registered and listening on their command channel"


def metric_names() -> set[str]:
    """Every metric the exporter and the workers expose, as Prometheus names them."""
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    build_info(registry)
    families = [*registry.collect(), *QueueCollector(lambda: None, []).describe()]  # type: ignore[arg-type, return-value]
    return {f.name + ("_total" if f.type == "counter" else "") for f in families}


def test_the_readme_lists_every_metric_and_no_other() -> None:
    text = README.read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    listed = set()
    for row in re.findall(r"^\| (`finex_.*?) \|", text, flags=re.MULTILINE):
        listed |= {n.split("{")[0] for n in re.findall(r"`(finex_[^`]*)`", row)}
    assert listed == metric_names()


def crd_columns() -> list[str]:
    crd = yaml.safe_load(CRD.read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    return [c["name"].upper() for c in columns if not c.get("priority")]


DOCS = [
    README,
    ROOT / "charts" / "finex-workers" / "templates" / "NOTES.txt",
    *sorted((ROOT / "docs").glob("*.md")),
]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_printer_column_list_is_the_crds(path: Path) -> None:
    """A `kubectl get fwp` line whose comment names columns names all of them, in order."""
    for line in path.read_text().splitlines():
        if "kubectl get fwp" not in line or "#" not in line or "-o wide" in line:
            continue
        comment = line.split("#", 1)[1]
        named = re.findall(r"\b[A-Z]{3,}\b", comment)
        if named:
            assert named in (crd_columns(), ["NAME", *crd_columns()]), line


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> dict[tuple[str, ...], Any]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    out: dict[tuple[str, ...], Any] = {}
    flags = {o for a in parser._actions for o in a.option_strings if o.startswith("--")} - {
        "--help"
    }
    if not subs or flags:
        out[path] = flags
    for sub in subs:
        for name, child in sub.choices.items():
            out |= _leaves(child, (*path, name))
    return out


def _commands(words: list[str]) -> list[tuple[str, ...]]:
    """The commands one synopsis line is about: `finex workers stop | pause | resume ...` is
    three; `finex enqueue full | growth IDS` is one (its words are arguments)."""
    node, path, rest = build_parser(), (), words[1:]
    while True:
        subs = [a for a in node._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or not rest or rest[0] not in subs[0].choices:
            return [path]
        choices = subs[0].choices
        alternatives = [rest[0]]
        while rest[1:2] == ["|"] and rest[2:3] and rest[2] in choices:
            rest = rest[2:]
            alternatives.append(rest[0])
        if len(alternatives) > 1:
            return [(*path, alt) for alt in alternatives]
        path, node, rest = (*path, rest[0]), choices[rest[0]], rest[1:]


def synopsis() -> dict[tuple[str, ...], set[str]]:
    """The flags the README's synopsis names for each command."""
    block = README.read_text().split("## The `finex` command", 1)[1].split("```", 2)[1]
    found: dict[tuple[str, ...], set[str]] = {}
    for line in block.strip().splitlines():
        words = line.split()
        assert words[0] == "finex", line
        for command in _commands(words):
            found.setdefault(command, set()).update(re.findall(r"--[a-z-]+", line))
    return found


def test_the_readme_synopsis_names_every_command_and_flag() -> None:
    assert synopsis() == _leaves(build_parser())


def test_a_live_worker_means_the_same_everywhere() -> None:
    from finex_workers.control import state

    assert LIVE in (state.live_workers.__doc__ or "")
    families = {f.name: f for f in QueueCollector(lambda: None, []).describe()}  # type: ignore[arg-type, return-value]
    assert LIVE in families["finex_queue_workers"].documentation
    crd = yaml.safe_load(CRD.read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert LIVE in status["properties"]["queues"]["items"]["properties"]["workers"]["description"]
    assert f"live workers ({LIVE})" in README.read_text()


PROSE = [README, ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", PROSE, ids=lambda p: p.name)
def test_every_finex_command_the_docs_name_exists(path: Path) -> None:
    """`finex recompute` was named in the docs and never existed; `finex enqueue full` does."""
    parser = build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    pattern = r"(?:`|^\s*|\$ )finex ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?"
    for match in re.finditer(pattern, path.read_text(), flags=re.MULTILINE):
        first, second = match.groups()
        assert first in top, match.group(0)
        subs = [a for a in top[first]._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and second is not None:
            assert second in subs[0].choices, match.group(0)
