"""`python -m training.evaluate`: see `training.evaluate.cli` (or `--help`)."""

import sys

from .cli import main

sys.exit(main())
