"""The dependency locks match pyproject.toml, and `make lint` notices when they do not.

hack/lock.py --check works offline: each lock records a hash of the inputs it was resolved
from. These cases edit a copy of pyproject and of the locks, never the real files.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _lock_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock", REPO / "hack" / "lock.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock = _lock_module()


def _copy(tmp_path: Path) -> tuple[Path, Path, Path]:
    paths = []
    for name in ("requirements.lock", "requirements-dev.lock", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
        paths.append(tmp_path / name)
    return paths[0], paths[1], paths[2]


def test_the_committed_locks_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "lock.py"), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_a_new_dependency_makes_both_locks_stale(tmp_path: Path) -> None:
    runtime, dev, pyproject = _copy(tmp_path)
    assert lock.problems(runtime, dev, pyproject) == []
    text = pyproject.read_text().replace('    "PyYAML>=6",\n', '    "PyYAML>=6",\n    "attrs",\n')
    pyproject.write_text(text)
    assert lock.problems(runtime, dev, pyproject) == [
        "requirements.lock is stale: pyproject.toml's dependencies changed since it was made; "
        "run make lock and commit the result",
        "requirements-dev.lock is stale: pyproject.toml's dependencies changed since it was made; "
        "run make lock and commit the result",
    ]


def test_a_new_dev_tool_makes_the_locks_stale(tmp_path: Path) -> None:
    runtime, dev, pyproject = _copy(tmp_path)
    text = pyproject.read_text().replace('"pytest>=8",\n', '"pytest>=8",\n    "hypothesis",\n')
    pyproject.write_text(text)
    assert len(lock.problems(runtime, dev, pyproject)) == 2


def test_other_pyproject_edits_leave_the_locks_fresh(tmp_path: Path) -> None:
    runtime, dev, pyproject = _copy(tmp_path)
    pyproject.write_text(pyproject.read_text().replace("line-length = 100", "line-length = 99"))
    assert lock.problems(runtime, dev, pyproject) == []


def test_a_pin_without_hashes_and_disagreeing_locks_are_found(tmp_path: Path) -> None:
    runtime, dev, pyproject = _copy(tmp_path)
    text = dev.read_text()
    start = text.index("\nrq==3.0.0 \\\n") + 1
    end = text.index("\n", text.index("# via", start))
    dev.write_text(text[:start] + "rq==3.0.1\n" + text[end + 1 :])
    assert lock.problems(runtime, dev, pyproject) == [
        "requirements-dev.lock: rq==3.0.1 has no --hash",
        "requirements-dev.lock pins rq==3.0.1 but requirements.lock pins rq==3.0.0; run make lock",
    ]
