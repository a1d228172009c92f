"""`python -m node` runs the tessera CLI."""

from node.cli import main

raise SystemExit(main())
