"""``python -m rnnkit`` runs the command line (see rnnkit.cli)."""
import sys

from rnnkit.cli import main

if __name__ == "__main__":  # not when a spawned worker process (rnnkit bench) imports this module
    sys.exit(main())
