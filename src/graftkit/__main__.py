"""`python -m graftkit ...` (and `accelerate launch -m graftkit train ...`): the `graft` command."""

from graftkit.cli import main

raise SystemExit(main())
