"""The ``finex`` command (the console script ``finex = finex_workers.cli:main``).

The top layer: it parses arguments, reads the settings once, and calls the layers below. All
terminal output of the verbs is here and in :mod:`finex_workers.console`.
"""

import os

if os.getpid() == 1:  # a container's init drops signals it has no handler for: runtime.early_stop
    from finex_workers.runtime import early_stop

    early_stop.install()

from finex_workers.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
