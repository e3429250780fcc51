"""``python -m gansweep``: the ``gansweep`` command."""
import sys

from gansweep.sweep.cli import main

sys.exit(main())
