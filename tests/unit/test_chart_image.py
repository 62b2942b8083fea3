"""The Dockerfile: multi-stage, a numeric non-root USER, exec-form ENTRYPOINT, hadolint-clean.

This machine has no Docker engine, so the image is never built here; these checks are what can
be verified without one (docs/install.md says so).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_multi_stage_and_the_runtime_copies_from_the_build_stage() -> None:
    froms = [args for word, args in _instructions() if word == "FROM"]
    assert len(froms) >= 2
    assert froms[0].endswith(" AS build")
    copies = [args for word, args in _final_stage() if word == "COPY"]
    assert copies == ["--from=build /opt/finex /opt/finex"]


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [args for word, args in _final_stage() if word == "USER"]
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert gid.isdigit()
    assert int(gid) > 0
    # The chart's podSecurityContext uses the same uid.
    assert f"runAsUser: {uid}" in (REPO / "charts/finex-workers/values.yaml").read_text()


def test_entrypoint_and_cmd_are_exec_form() -> None:
    final = dict(_final_stage())
    assert json.loads(final["ENTRYPOINT"]) == ["finex"]
    assert json.loads(final["CMD"]) == ["workers", "start"]
    assert not [args for word, args in _instructions() if word == "ADD"]


def test_dockerignore_sends_only_the_sources() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    for needed in ("!pyproject.toml", "!README.md", "!workers/", "!operator/"):
        assert needed in lines


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: it is a dev dependency (pip install -e '.[dev]')"
    proc = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
