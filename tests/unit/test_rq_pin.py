"""rq is pinned to the release the Lua scripts mirror, and finex refuses to start with another.

The subprocess case puts a fake ``rq-9.9.9.dist-info`` first on the path, so the installed
metadata says 9.9.9 while everything else stays real.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import rq

from finex_workers.control.rqmirror import MIRRORED_RQ_VERSION, rq_mismatch

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_rq_is_the_mirrored_one() -> None:
    assert rq.__version__ == MIRRORED_RQ_VERSION
    assert rq_mismatch() is None


def test_pyproject_and_the_lock_pin_exactly_the_mirrored_rq() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"rq=={MIRRORED_RQ_VERSION}" in deps
    for lock in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / lock).read_text()
        assert re.search(rf"^rq=={re.escape(MIRRORED_RQ_VERSION)} ", text, re.M), lock


def test_another_rq_is_refused_in_one_line() -> None:
    assert rq_mismatch("3.0.1") == (
        "rq 3.0.1 is installed, but finex's Lua scripts write rq 3.0.0's structures; install "
        "rq==3.0.0 (pip install --require-hashes -r requirements.lock)"
    )


def test_finex_refuses_to_start_with_another_rq(tmp_path: Path) -> None:
    dist = tmp_path / "rq-9.9.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rq\nVersion: 9.9.9\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0",
           "DATABASE_URL": "postgresql://x@127.0.0.1:1/x"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "finex_workers.cli", "workers", "status"],
        check=False, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == [
        "finex: rq 9.9.9 is installed, but finex's Lua scripts write rq 3.0.0's structures; "
        "install rq==3.0.0 (pip install --require-hashes -r requirements.lock)"
    ]
    # --version still answers, so an operator can see what is installed.
    version = subprocess.run(
        [sys.executable, "-m", "finex_workers.cli", "--version"],
        check=False, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert version.returncode == 0


def test_the_operator_refuses_to_start_with_another_rq(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import kopf

    from finex_operator import handlers

    monkeypatch.setattr(handlers, "rq_mismatch", lambda: rq_mismatch("3.1.0"))
    with pytest.raises(kopf.PermanentError, match=r"^finex operator: rq 3\.1\.0 is installed"):
        asyncio.run(handlers.startup(settings=kopf.OperatorSettings(), memo=kopf.Memo()))
