"""``python -m worker``: run a TaskManager (same flags as ``jm worker``)."""

import sys

from worker.cli import main

# The guard matters: slot processes ('spawn') re-import this module as
# __mp_main__ and must not start a second worker.
if __name__ == "__main__":
    sys.exit(main())
