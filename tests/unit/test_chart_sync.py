"""The chart's copies of the CRD and the alert rules match their single sources.

crds/*.yaml and ops/prometheus-rules.yml are the sources; hack/sync-chart.py copies them into
charts/finex-workers/files/, which the templates read. If someone edits a source and forgets
to re-sync, or edits a copy, this fails and says which file and what to run.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "charts" / "finex-workers" / "templates"


def _sync_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_chart", REPO / "hack" / "sync-chart.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync_chart = _sync_module()


def test_chart_copies_match_their_sources() -> None:
    assert sync_chart.drift() == [], "chart copies drifted; run: python hack/sync-chart.py"


def test_every_source_has_a_copy() -> None:
    copies = {p.as_posix() for p in sync_chart.expected_files()}
    assert "charts/finex-workers/files/prometheus-rules.yml" in copies
    for crd in (REPO / "crds").glob("*.yaml"):
        assert f"charts/finex-workers/files/crds/{crd.name}" in copies


def test_templates_read_the_copies() -> None:
    assert '.Files.Glob "files/crds/*.yaml"' in (TEMPLATES / "crds.yaml").read_text()
    assert (
        '.Files.Get "files/prometheus-rules.yml"' in (TEMPLATES / "prometheusrule.yaml").read_text()
    )


def _fake_repo(tmp_path: Path) -> Path:
    for rel in ("crds", "ops/prometheus-rules.yml", "charts/finex-workers/files"):
        src, dst = REPO / rel, tmp_path / rel
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    return tmp_path


def test_drift_is_reported_and_sync_repairs_it(tmp_path: Path) -> None:
    repo = _fake_repo(tmp_path)
    assert sync_chart.drift(repo) == []
    rules = repo / "ops" / "prometheus-rules.yml"
    rules.write_text(rules.read_text() + "# an edit\n")
    (repo / "crds" / "extra.yaml").write_text("kind: CustomResourceDefinition\n")
    (repo / "charts/finex-workers/files/crds/gone.yaml").write_text("old\n")
    assert sync_chart.drift(repo) == [
        "charts/finex-workers/files/crds/extra.yaml: missing",
        "charts/finex-workers/files/prometheus-rules.yml: differs from its source",
        "charts/finex-workers/files/crds/gone.yaml: has no source any more",
    ]
    assert len(sync_chart.sync(repo)) == 3
    assert sync_chart.drift(repo) == []
    assert not (repo / "charts/finex-workers/files/crds/gone.yaml").exists()


def test_check_mode_exits_nonzero_on_drift(tmp_path: Path, capsys) -> None:
    repo = _fake_repo(tmp_path)
    assert sync_chart.main(["--check"], repo) == 0
    (repo / "crds" / "extra.yaml").write_text("kind: CustomResourceDefinition\n")
    assert sync_chart.main(["--check"], repo) == 1
    assert "run: python hack/sync-chart.py" in capsys.readouterr().err
