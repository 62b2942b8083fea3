#!/usr/bin/env python3
"""A change under charts/ must change the chart's version: what `make lint` checks.

charts/finex-workers.version (committed, outside the chart so helm never packages it) holds
the chart version and a sha256 of every file of charts/finex-workers/ at that version, with
Chart.yaml's own `version:` line left out. The check needs no git tag and no network, so it
works the same on a clean clone in CI:

- chart unchanged since the record, same version: fine;
- chart changed, same version: fails, "bump version in Chart.yaml, then make chart-version";
- version bumped but not recorded: fails, "run make chart-version";
- `--record` (make chart-version) writes the record, and refuses a version that is not above
  the recorded one while the chart differs, unless --unreleased says the recorded version was
  never released (so it may still change before its tag).

    python hack/chart-version.py --check
    python hack/chart-version.py --record [--unreleased]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHART = Path("charts") / "finex-workers"
RECORD = Path("charts") / "finex-workers.version"
VERSION_LINE = re.compile(r"^version:\s*\"?([^\"\s#]+)\"?\s*(#.*)?$", re.M)
HEADER = """\
# The chart's version and a sha256 of charts/finex-workers/ at that version (Chart.yaml's
# version line left out). Written by `make chart-version`; `make lint` fails when the chart
# changes and its version does not (hack/chart-version.py).
"""


def chart_files(repo: Path) -> list[Path]:
    """Tracked files and untracked-but-not-ignored ones: what a commit would hold."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "--", str(CHART)],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return sorted(Path(p) for p in out.splitlines() if (repo / p).is_file())


def chart_version(repo: Path) -> str:
    match = VERSION_LINE.search((repo / CHART / "Chart.yaml").read_text())
    if not match:
        raise SystemExit(f"chart-version: no version in {CHART / 'Chart.yaml'}")
    return match[1]


def chart_digest(repo: Path) -> str:
    digest = hashlib.sha256()
    for rel in chart_files(repo):
        data = (repo / rel).read_bytes()
        if rel == CHART / "Chart.yaml":
            data = VERSION_LINE.sub("", data.decode()).encode()
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return "sha256:" + digest.hexdigest()


def recorded(repo: Path) -> tuple[str, str] | None:
    path = repo / RECORD
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            version, digest = line.split()
            return version, digest
    return None


def semver_key(version: str) -> tuple[int, ...]:
    core = re.match(r"^(\d+)\.(\d+)\.(\d+)", version)
    if not core:
        raise SystemExit(f"chart-version: {version!r} is not a semantic version")
    return tuple(int(x) for x in core.groups())


def problem(repo: Path = REPO) -> str | None:
    """The one line `make lint` prints, or None when the record matches the chart."""
    version, digest = chart_version(repo), chart_digest(repo)
    record = recorded(repo)
    if record is None:
        return f"{RECORD} is missing; run make chart-version"
    old_version, old_digest = record
    if version == old_version and digest == old_digest:
        return None
    if version == old_version:
        return (
            f"charts/ changed but the chart is still version {version}: bump version in "
            f"{CHART / 'Chart.yaml'}, then run make chart-version"
        )
    return (
        f"{CHART / 'Chart.yaml'} says version {version} but {RECORD} records {old_version}; "
        "run make chart-version"
    )


def record(repo: Path = REPO, *, unreleased: bool = False) -> str:
    version, digest = chart_version(repo), chart_digest(repo)
    old = recorded(repo)
    changed = old is not None and old[1] != digest and not unreleased
    if old is not None and changed and semver_key(version) <= semver_key(old[0]):
        raise SystemExit(
            f"chart-version: the chart changed; its version ({version}) must be above the "
            f"recorded {old[0]} (or pass --unreleased if {old[0]} was never released)"
        )
    (repo / RECORD).write_text(f"{HEADER}{version} {digest}\n")
    return f"recorded chart {version} {digest}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--record", action="store_true")
    parser.add_argument("--unreleased", action="store_true", help="re-record an untagged version")
    args = parser.parse_args()
    if args.check:
        found = problem()
        if found:
            print(f"chart-version: {found}", file=sys.stderr)
            return 1
        return 0
    print(record(unreleased=args.unreleased))
    return 0


if __name__ == "__main__":
    sys.exit(main())
