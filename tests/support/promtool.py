"""Paths and parsing shared by the tests of ops/: the rules, the dashboard and the runbook."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.fleet import ROOT

RULES = ROOT / "ops" / "prometheus-rules.yml"
RULES_TEST = ROOT / "ops" / "prometheus-rules.test.yml"
DASHBOARD = ROOT / "ops" / "grafana-dashboard.json"
RUNBOOK = ROOT / "docs" / "runbook.md"

METRIC_NAME = re.compile(r"\bfinex_[a-z_]+")


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    """Every PromQL string in the dashboard: panel targets and templating queries."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"expr", "definition", "query"} and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(DASHBOARD.read_text()))
    return found


def metric_names(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in METRIC_NAME.findall(expr)}


def github_anchors(markdown: Path) -> set[str]:
    """The anchors GitHub generates for a Markdown file's headings."""
    anchors = set()
    for line in markdown.read_text().splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors
