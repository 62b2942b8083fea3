"""The one rq release whose private structures our Lua scripts write, and the check for it.

``lua/claim.lua`` and ``lua/finish.lua`` (and the DLQ and recovery scripts) write rq's job and
execution hashes, registries and worker keys field by field, as rq 3.0.0 writes them; the
integration tests run the same work through rq's own worker and compare. Another rq could lay
those keys out differently, and rq-dashboard, ``rq info`` and rq's own cleanup would then read
what our scripts wrote wrongly, silently. So every ``finex`` command and the operator refuse to
start with another rq, in one line that says what to install. pyproject.toml pins the same
version (``rq==3.0.0``); an rq upgrade is a change to both plus a test run.
"""

from __future__ import annotations

from importlib import metadata

MIRRORED_RQ_VERSION = "3.0.0"


def rq_mismatch(installed: str | None = None) -> str | None:
    """The refusal line when the installed rq is not the mirrored one, else ``None``."""
    if installed is None:
        try:
            installed = metadata.version("rq")
        except metadata.PackageNotFoundError:
            installed = "none"
    if installed == MIRRORED_RQ_VERSION:
        return None
    return (
        f"rq {installed} is installed, but finex's Lua scripts write rq {MIRRORED_RQ_VERSION}'s "
        f"structures; install rq=={MIRRORED_RQ_VERSION} (pip install --require-hashes -r "
        "requirements.lock)"
    )
