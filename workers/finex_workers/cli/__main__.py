"""``python -m finex_workers.cli``: the same as the ``finex`` console script."""

import sys

from finex_workers.cli.main import main

sys.exit(main())
