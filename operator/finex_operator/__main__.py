"""`python -m finex_operator [kopf run options]` = `kopf run -m finex_operator.handlers ...`."""

from __future__ import annotations

import sys

from kopf.cli import main


def run() -> None:
    main(args=["run", "-m", "finex_operator.handlers", *sys.argv[1:]])


if __name__ == "__main__":
    run()
