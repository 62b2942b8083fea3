"""Where ``make dev``'s servers are, for a ``finex`` run in another shell.

``make dev`` writes ``<data dir>/dev.env`` while it runs (shell syntax: ``source`` it) and
removes it when it stops. The ``finex`` command reads it when neither REDIS_URL nor
DATABASE_URL is set and the ``make dev`` process that wrote it is still alive, so the hint
``Try: .venv/bin/finex workers status`` works in a new shell of the same checkout.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from pathlib import Path

from finex_workers.infra.processes import pid_alive

#: Local servers' data, unless FINEX_DEV_DATA_DIR says otherwise (e.g. when the checkout is
#: under a folder the postgres user cannot enter).
DEFAULT_DATA_DIR = ".data"
STATE_FILE = "dev.env"
#: The variables the state file sets, besides FINEX_DEV_PID.
VARIABLES = ("REDIS_URL", "DATABASE_URL")


def data_dir(env: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """The dev data directory (absolute)."""
    env = os.environ if env is None else env
    return Path(env.get("FINEX_DEV_DATA_DIR", DEFAULT_DATA_DIR)).resolve()


def export_lines(urls: dict[str, str]) -> list[str]:
    """``export NAME=value`` lines for a shell."""
    return [f"export {name}={shlex.quote(urls[name])}" for name in VARIABLES]


def write(directory: Path, urls: dict[str, str]) -> Path:
    """Record the servers of this ``make dev`` process; returns the file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STATE_FILE
    lines = [
        "# written by `make dev` while it runs; removed when it stops",
        *export_lines(urls),
        f"export FINEX_DEV_PID={os.getpid()}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def remove(directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (directory / STATE_FILE).unlink()


def read(directory: Path) -> dict[str, str] | None:
    """The URLs of a running ``make dev``, or None (no file, or its process is gone)."""
    try:
        content = (directory / STATE_FILE).read_text()
    except OSError:
        return None
    values: dict[str, str] = {}
    for line in content.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            values[name] = value
    pid = values.pop("FINEX_DEV_PID", "")
    if not pid.isdigit() or not pid_alive(int(pid)):
        return None
    if not all(name in values for name in VARIABLES):
        return None
    return {name: values[name] for name in VARIABLES}
