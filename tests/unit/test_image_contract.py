"""The image hack/build-image.sh builds (no Docker) keeps the Dockerfile's contract.

Both are read as text: the Dockerfile's final stage, and the IMAGE_* values the script declares
and hands to `umoci config`. tests/e2e/test_real_node.py checks the built image's config too.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
BUILD_SCRIPT = REPO / "hack" / "build-image.sh"


def _final_stage() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            out.append((word.upper(), rest.strip()))
    last_from = max(i for i, (word, _) in enumerate(out) if word == "FROM")
    return out[last_from:]


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in _final_stage():
        if word == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def _declared() -> dict[str, str]:
    """IMAGE_*=value assignments at the top level of the build script."""
    found = {}
    for line in BUILD_SCRIPT.read_text().splitlines():
        match = re.fullmatch(r"(IMAGE_[A-Z_]+)=(.*)", line)
        if match:
            found[match[1]] = shlex.split(match[2])[0] if match[2] else ""
    return found


def test_user_workdir_entrypoint_cmd_and_port_agree() -> None:
    final = _final_stage()
    single = {word: args for word, args in final if word in ("USER", "WORKDIR", "EXPOSE")}
    declared = _declared()
    assert declared["IMAGE_USER"] == single["USER"] == "10001:10001"
    assert declared["IMAGE_WORKDIR"] == single["WORKDIR"]
    assert declared["IMAGE_EXPOSE"] == f"{single['EXPOSE']}/tcp"
    entrypoint = json.loads(dict(final)["ENTRYPOINT"])
    assert [declared["IMAGE_ENTRYPOINT"]] == entrypoint
    assert declared["IMAGE_CMD"].split() == json.loads(dict(final)["CMD"])


def test_environment_agrees() -> None:
    env = _dockerfile_env()
    declared = _declared()
    assert set(env) == {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
    for key in ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"):
        assert declared[f"IMAGE_ENV_{key}"] == env[key]
    # The Dockerfile prepends the venv to the base image's PATH; the script writes it out.
    prefix = env["PATH"].removesuffix(":$PATH")
    assert prefix == f"{declared['IMAGE_VENV']}/bin"
    assert declared["IMAGE_ENV_PATH"].startswith(f"{prefix}:")
    assert declared["IMAGE_ENV_PATH"].endswith(":/usr/bin:/sbin:/bin")


def test_the_venv_path_and_the_inputs_agree() -> None:
    copies = [args for word, args in _final_stage() if word == "COPY"]
    assert copies == [f"--from=build {_declared()['IMAGE_VENV']} {_declared()['IMAGE_VENV']}"]
    # The script hashes and copies the files the Docker build context lets in.
    script = BUILD_SCRIPT.read_text()
    assert "project_files pyproject.toml README.md workers operator" in script
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    for needed in ("!pyproject.toml", "!README.md", "!workers/", "!operator/"):
        assert needed in ignore


def test_the_python_matches_the_dockerfiles_base_image() -> None:
    base = re.search(r"ARG PYTHON_IMAGE=python:(\d+\.\d+)-slim-(\w+)", DOCKERFILE.read_text())
    assert base, "the Dockerfile's PYTHON_IMAGE default changed shape"
    # bookworm's python3 is 3.11: the suite and the base image's Python go together.
    assert (base[1], base[2]) == ("3.11", _declared()["IMAGE_SUITE"])
