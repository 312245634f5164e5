"""Where the commands write: results on stdout, errors on stderr (rich markup, no auto-highlighting)."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=False, highlight=False)
err = Console(stderr=True, highlight=False)
