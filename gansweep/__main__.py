"""``python -m gansweep``: the ``gansweep`` command."""
import sys

from gansweep.sweep.cli.main import main

sys.exit(main())
