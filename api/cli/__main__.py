"""`python -m api.cli` runs the `pagedrag` command."""

from api.cli import main

raise SystemExit(main())
