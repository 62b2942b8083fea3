"""The release's numbers agree, its files exist, and a chart change needs a chart version bump.

The chart-version cases run hack/chart-version.py on a throwaway git repository holding a copy
of the chart, as a clean clone in CI would (no tags needed).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
import yaml

import finex_workers

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "finex-workers"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "chart_version", REPO / "hack" / "chart-version.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chart_version = _module()


def _version() -> str:
    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


def test_package_cli_and_chart_name_one_release() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert finex_workers.__version__ == _version()
    assert chart["appVersion"] == _version()
    assert "CHANGELOG.md" in {p.name for p in REPO.iterdir()}
    assert f"## {_version()}" in (REPO / "CHANGELOG.md").read_text()


def test_chart_yaml_has_no_placeholders() -> None:
    text = (CHART / "Chart.yaml").read_text()
    assert "example.com" not in text
    assert "placeholder" not in text.lower()


def test_the_license_is_the_one_pyproject_names() -> None:
    assert (
        tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == "Apache-2.0"
    )
    text = (REPO / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_committed_chart_record_matches_the_chart() -> None:
    assert chart_version.problem(REPO) is None


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copytree(CHART, tmp_path / "charts" / "finex-workers")
    shutil.copy(REPO / "charts" / "finex-workers.version", tmp_path / "charts")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "-A"], check=True)
    return tmp_path


def _bump(repo: Path, version: str) -> None:
    chart = repo / "charts" / "finex-workers" / "Chart.yaml"
    text = chart.read_text()
    chart.write_text(text.replace(f"\nversion: {_version()}\n", f"\nversion: {version}\n"))


def test_a_chart_change_without_a_bump_is_refused(repo: Path) -> None:
    assert chart_version.problem(repo) is None
    values = repo / "charts" / "finex-workers" / "values.yaml"
    values.write_text(values.read_text() + "# a change\n")
    assert chart_version.problem(repo) == (
        f"charts/ changed but the chart is still version {_version()}: bump version in "
        "charts/finex-workers/Chart.yaml, then run make chart-version"
    )
    with pytest.raises(SystemExit, match="must be above the recorded"):
        chart_version.record(repo)


def test_a_new_untracked_template_counts_as_a_change(repo: Path) -> None:
    (repo / "charts" / "finex-workers" / "templates" / "new.yaml").write_text("{}\n")
    assert "bump version" in (chart_version.problem(repo) or "")


def test_a_bump_must_be_recorded_and_then_passes(repo: Path) -> None:
    values = repo / "charts" / "finex-workers" / "values.yaml"
    values.write_text(values.read_text() + "# a change\n")
    _bump(repo, "9.9.9")
    assert chart_version.problem(repo) == (
        "charts/finex-workers/Chart.yaml says version 9.9.9 but charts/finex-workers.version "
        f"records {_version()}; run make chart-version"
    )
    chart_version.record(repo)
    assert chart_version.problem(repo) is None


def test_an_unreleased_version_may_be_recorded_again(repo: Path) -> None:
    values = repo / "charts" / "finex-workers" / "values.yaml"
    values.write_text(values.read_text() + "# a change\n")
    chart_version.record(repo, unreleased=True)
    assert chart_version.problem(repo) is None
