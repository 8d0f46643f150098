"""`python -m gr_explorer ...` (also under torchrun) is the `gr-explorer` command."""

import sys

from .cli import main

sys.exit(main())
