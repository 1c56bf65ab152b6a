"""``python -m rnnkit`` runs the command line (see rnnkit.cli)."""
import sys

from .cli import main

sys.exit(main())
