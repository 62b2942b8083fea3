"""The image hack/build-image.sh builds (no Docker) keeps the Dockerfile's contract.

Both are read as text: the Dockerfile's final stage, and the IMAGE_* values the script declares
and hands to `umoci config`. tests/e2e/test_real_node.py checks the built image's config too.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
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
    assert "project_files pyproject.toml requirements.lock README.md workers operator" in script
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    for needed in (
        "!pyproject.toml",
        "!requirements.lock",
        "!README.md",
        "!workers/",
        "!operator/",
    ):
        assert needed in ignore


def test_the_base_image_is_debian_of_the_same_suite_by_digest() -> None:
    base = re.search(
        r"^ARG BASE_IMAGE=debian:(\w+)-slim@sha256:[0-9a-f]{64}$", DOCKERFILE.read_text(), re.M
    )
    assert base, "the Dockerfile's base image is not debian:<suite>-slim by digest"
    # Both images run Debian's python3 of one suite: bookworm's 3.11, the Python of the tests.
    assert base[1] == _declared()["IMAGE_SUITE"]
    assert [args for word, args in _final_stage() if word == "FROM"] == ["${BASE_IMAGE} AS runtime"]


def test_both_builds_install_the_lock_with_hashes_and_write_the_same_bom() -> None:
    dockerfile = DOCKERFILE.read_text()
    script = BUILD_SCRIPT.read_text()
    for text in (dockerfile, script):
        assert re.search(r"pip install (--quiet )?--require-hashes -r", text)
        assert "--no-deps --no-build-isolation" in text
        assert "dpkg-query" in text
        assert "pip list --format=freeze" in text
    bom = _declared()["IMAGE_BOM"]
    assert "io.finex.bom.path=$IMAGE_BOM" in script
    assert f'io.finex.bom.path="{bom}"' in dockerfile
    assert f"> {bom}" in dockerfile


def test_the_version_label_is_the_projects() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert f'org.opencontainers.image.version="{version}"' in DOCKERFILE.read_text()
    assert f"docker build -t finex-workers:{version} ." in DOCKERFILE.read_text()
