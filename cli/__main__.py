"""`python -m cli` runs the same command as the `ragcord` console script."""

from __future__ import annotations

import sys

from cli.main import main

sys.exit(main())
