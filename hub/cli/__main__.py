"""``python -m hub.cli``: the console script without the venv on PATH."""

from hub.cli.commands import main

raise SystemExit(main())
