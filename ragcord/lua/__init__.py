"""Redis Lua scripts, kept as `.lua` files (package data) so each can document its KEYS and ARGV at its top.

A plain module's scripts live here in a folder named after it (`memory/append.lua`); a package keeps its own
in `lua/` inside it (`ragcord/jobs/lua/`). Modules call `script_source` and hand the text to
`redis.Redis.register_script`, which runs it by SHA and loads it once per server.
"""

from __future__ import annotations

import functools
from importlib.resources import files

__all__ = ["script_source"]


@functools.cache
def script_source(package: str, *paths: str) -> str:
    """The text of `package`'s files at `paths` ("/"-separated) joined in order, a shared library first."""
    root = files(package)
    return "".join(root.joinpath(*path.split("/")).read_text(encoding="utf-8") for path in paths)
