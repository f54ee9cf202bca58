"""``python -m memsim.cli``: the command line."""

import sys

from memsim.cli import main

sys.exit(main())
