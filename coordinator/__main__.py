"""``python -m coordinator`` is the ``jm`` command line."""

import sys

from coordinator.cli import main

sys.exit(main())
