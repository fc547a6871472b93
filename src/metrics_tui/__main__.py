"""Allow ``python -m metrics_tui``."""

from metrics_tui.cli import main

raise SystemExit(main())
