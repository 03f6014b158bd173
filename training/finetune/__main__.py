"""`python -m training.finetune`: see `training.finetune.cli` (or `--help`)."""

import sys

from .cli import main

sys.exit(main())
