#!/usr/bin/env python3
"""Copy the chart's single sources into charts/finex-workers/files/, or check that they match.

    crds/*.yaml              -> charts/finex-workers/files/crds/   (templates/crds.yaml)
    ops/prometheus-rules.yml -> charts/finex-workers/files/        (templates/prometheusrule.yaml)

The copies are byte-for-byte: the templates read them with .Files.Get, which does not run them
through the template engine, so the rules' {{ $labels }} reach Prometheus untouched and nothing
needs escaping. A chart copy without a source (a CRD removed from crds/) is deleted.

    python hack/sync-chart.py           # write the copies
    python hack/sync-chart.py --check   # exit 1 and name each file that differs (what CI runs,
                                        # through tests/unit/test_chart_sync.py)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "finex-workers"


def expected_files(repo: Path = REPO) -> dict[Path, bytes]:
    """Each chart copy (path relative to the repository) and the bytes it must hold."""
    files: dict[Path, bytes] = {}
    chart = Path("charts") / "finex-workers" / "files"
    for crd in sorted((repo / "crds").glob("*.yaml")):
        files[chart / "crds" / crd.name] = crd.read_bytes()
    rules = repo / "ops" / "prometheus-rules.yml"
    files[chart / rules.name] = rules.read_bytes()
    return files


def stale_files(repo: Path = REPO) -> list[Path]:
    """Chart copies of CRDs whose source is gone (relative to the repository)."""
    expected = expected_files(repo)
    copies = (repo / "charts" / "finex-workers" / "files" / "crds").glob("*.yaml")
    return sorted(p.relative_to(repo) for p in copies if p.relative_to(repo) not in expected)


def drift(repo: Path = REPO) -> list[str]:
    """One line per chart copy that is missing, different or stale; empty when in sync."""
    problems: list[str] = []
    for rel, content in expected_files(repo).items():
        path = repo / rel
        if not path.exists():
            problems.append(f"{rel}: missing")
        elif path.read_bytes() != content:
            problems.append(f"{rel}: differs from its source")
    problems += [f"{rel}: has no source any more" for rel in stale_files(repo)]
    return problems


def sync(repo: Path = REPO) -> list[str]:
    """Write every copy that differs and delete stale ones; returns what changed."""
    changed: list[str] = []
    for rel, content in expected_files(repo).items():
        path = repo / rel
        if not path.exists() or path.read_bytes() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            changed.append(f"wrote {rel}")
    for rel in stale_files(repo):
        (repo / rel).unlink()
        changed.append(f"deleted {rel}")
    return changed


def main(argv: list[str] | None = None, repo: Path = REPO) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report drift, change nothing")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift(repo)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run: python hack/sync-chart.py", file=sys.stderr)
            return 1
        print("chart copies are in sync")
        return 0
    for line in sync(repo) or ["chart copies already in sync"]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
