"""`python -m graftkit ...` is `graft ...` (what `graft train --devices N` and `accelerate launch -m graftkit` start)."""

import sys

from graftkit.cli import main

sys.exit(main())
