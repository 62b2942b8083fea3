"""Terminal presentation shared by the ``finex`` command and ``make dev``: progress on stderr.

Kept out of the runtime and the control layer (as RQ keeps ``rq/cli/helpers.py``), so those
report progress through a plain ``(done, total)`` callback and never write to a terminal.
"""

from __future__ import annotations

import sys
from typing import Any


class ProgressBar:
    """Progress on stderr: a redrawn bar on a terminal, a line every 10% otherwise."""

    def __init__(self, label: str, stream: Any = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1
        self._finished = False

    def __call__(self, done: int, total: int) -> None:
        """Draw done/total; once it has drawn a full bar, later calls draw nothing (a caller
        that polls may report the end twice)."""
        if total <= 0 or self._finished:
            return
        self._finished = done >= total
        frac = done / total
        if self.tty:
            filled = int(frac * 30)
            self.stream.write(
                f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}"
            )
            if done >= total:
                self.stream.write("\n")
        else:
            decile = int(frac * 10)
            if decile != self._last_decile or done >= total:
                self._last_decile = decile
                self.stream.write(f"{self.label}: {done}/{total}\n")
        self.stream.flush()
