#!/usr/bin/env python3
"""The dependency locks: every Python package pinned to one version and its hashes.

    requirements.lock      the runtime: pyproject's dependencies (what the image installs:
                           hack/build-image.sh and the Dockerfile)
    requirements-dev.lock  the same pins plus the dev extra (what hack/bootstrap.sh installs
                           into .venv)

Both also pin pip and setuptools (the build backend pyproject names), so that installing the
project itself (`pip install --no-deps --no-build-isolation`) downloads nothing unhashed.
Installers use `pip install --require-hashes`: a package whose file differs from the one
locked is refused.

    python hack/lock.py           # make lock: resolve again (needs PyPI) and write both files
    python hack/lock.py --check   # make lint: offline; exit 1 when a lock is stale

Staleness is checked without the network: each lock's first line records a hash of the inputs
it was made from (pyproject's dependencies, extras, requires-python and build requirements, and
BUILD_PINS below). Any edit to them makes the hash differ, and the check says to run
`make lock`. It also checks that every pin carries hashes and that the two locks agree on every
package they share. Re-resolving in CI instead would turn red whenever PyPI publishes a release.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
RUNTIME = REPO / "requirements.lock"
DEV = REPO / "requirements-dev.lock"
# Installed beside the dependencies so the project's own install needs nothing unlocked.
BUILD_PINS = ("pip", "setuptools>=69")
# The interpreter and platform the locks resolve for: Debian bookworm's python3 (the image,
# hack/bootstrap.sh's venv on Debian) and the Dockerfile's python:3.11.
PYTHON_VERSION = "3.11"
PLATFORM = "linux"
HEADER = "# finex-lock-inputs: sha256="
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\;]+)")


def inputs_digest(pyproject: Path = PYPROJECT) -> str:
    """A hash of everything a lock is resolved from, and of nothing else in pyproject."""
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    inputs = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "build-system": data.get("build-system", {}).get("requires", []),
        "build-pins": list(BUILD_PINS),
        "python": PYTHON_VERSION,
        "platform": PLATFORM,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def pins(text: str) -> dict[str, str]:
    """Package name (normalised) -> version, for every `name==version` line of a lock."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        m = PIN.match(line)
        if m:
            found[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return found


def unhashed(text: str) -> list[str]:
    """Pins without a --hash (pip --require-hashes would refuse the whole install)."""
    entries = re.split(r"\n(?=\S)", text)
    return [e.split()[0] for e in entries if PIN.match(e) and "--hash=sha256:" not in e]


def problems(runtime: Path = RUNTIME, dev: Path = DEV, pyproject: Path = PYPROJECT) -> list[str]:
    """One line per problem; empty when both locks match pyproject."""
    digest = inputs_digest(pyproject)
    found: list[str] = []
    texts: dict[Path, str] = {}
    for lock in (runtime, dev):
        if not lock.exists():
            found.append(f"{lock.name} is missing; run make lock")
            continue
        text = texts[lock] = lock.read_text()
        first = text.splitlines()[0] if text else ""
        if first != HEADER + digest:
            found.append(
                f"{lock.name} is stale: pyproject.toml's dependencies changed since it was "
                "made; run make lock and commit the result"
            )
        found += [f"{lock.name}: {name} has no --hash" for name in unhashed(text)]
    if len(texts) == 2:
        shared = pins(texts[runtime])
        for name, version in pins(texts[dev]).items():
            if name in shared and shared[name] != version:
                found.append(
                    f"{dev.name} pins {name}=={version} but {runtime.name} pins "
                    f"{name}=={shared[name]}; run make lock"
                )
    return found


def compile_lock(out: Path, extras: list[str], constraints: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp) / "build-pins.in"
        build.write_text("\n".join(BUILD_PINS) + "\n")
        body = Path(tmp) / out.name
        cmd = [sys.executable, "-m", "uv", "pip", "compile", "--quiet", "--generate-hashes",
               "--python-version", PYTHON_VERSION, "--python-platform", PLATFORM,
               "--custom-compile-command", "make lock", "--output-file", str(body),
               str(PYPROJECT), str(build)]  # fmt: skip
        for extra in extras:
            cmd += ["--extra", extra]
        if constraints is not None:
            cmd += ["--constraint", str(constraints)]
        subprocess.run(cmd, check=True, cwd=REPO)
        text = body.read_text().replace(tmp + "/", "").replace(str(REPO) + "/", "")
    out.write_text(f"{HEADER}{inputs_digest()}\n{text}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="check, offline; write nothing")
    args = parser.parse_args()
    if args.check:
        found = problems()
        for line in found:
            print(f"lock: {line}", file=sys.stderr)
        return 1 if found else 0
    compile_lock(RUNTIME, [], None)
    # The dev lock keeps every runtime pin: tests run what the image runs.
    compile_lock(DEV, ["dev"], RUNTIME)
    for lock in (RUNTIME, DEV):
        print(f"wrote {lock.relative_to(REPO)} ({len(pins(lock.read_text()))} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
