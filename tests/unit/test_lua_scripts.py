"""The Redis Lua scripts ship as package data, and each documents every KEYS and ARGV entry it reads."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

from ragcord.lua import script_source

# (package, path) of every script Redis runs; see ragcord/lua/__init__.py for where they live.
JOB_SCRIPTS = (
    "create",
    "start_page",
    "reserve_links",
    "claim_url",
    "claim_content",
    "finish_page",
    "cancel",
    "end_sweep",
)
SCRIPTS = [("ragcord.jobs", f"lua/{name}.lua") for name in JOB_SCRIPTS] + [
    ("ragcord.lua", path)
    for path in (
        "memory/append.lua",
        "memory/fold.lua",
        "memory/merge.lua",
        "ratelimit/hit.lua",
        "bindings/claim.lua",
        "feedback/vote.lua",
        "copies/claim.lua",
        "copies/take.lua",
        "furniture/count.lua",
        "politeness/acquire.lua",
        "politeness/release.lua",
        "politeness/renew.lua",
        "threads/own.lua",
        "threads/use.lua",
        "kbs/claim_crawls.lua",
        "kbs/claim_firing.lua",
    )
]


def split_header(text: str) -> tuple[str, str]:
    lines = text.splitlines()
    n = next(i for i, line in enumerate(lines) if not line.startswith("--"))
    return "\n".join(lines[:n]), "\n".join(lines[n:])


def test_every_lua_file_is_listed_here():
    found = {("ragcord.jobs", f"lua/{p.name}") for p in files("ragcord.jobs").joinpath("lua").iterdir()}
    found |= {
        ("ragcord.lua", f"{folder.name}/{p.name}")
        for folder in files("ragcord.lua").iterdir()
        if folder.is_dir() and not folder.name.startswith("__")
        for p in folder.iterdir()
    }
    assert found == set(SCRIPTS) | {("ragcord.jobs", "lua/lib.lua")}


@pytest.mark.parametrize(("package", "path"), SCRIPTS)
def test_the_header_documents_every_key_and_argument_the_script_reads(package, path):
    header, body = split_header(script_source(package, path))
    assert header and "Returns" in header
    for name in ("KEYS", "ARGV"):
        documented = {int(i) for i in re.findall(rf"^-- {name}\[(\d+)\]", header, re.MULTILINE)}
        rest = re.search(rf"^-- {name}\[(\d+)\.\.\]", header, re.MULTILINE)
        for index in {int(i) for i in re.findall(rf"{name}\[(\d+)\]", body)}:
            assert index in documented or (rest and index >= int(rest.group(1))), f"{name}[{index}]"


def test_a_shared_library_goes_first():
    lib = script_source("ragcord.jobs", "lua/lib.lua")
    cancel = script_source("ragcord.jobs", "lua/cancel.lua")
    assert script_source("ragcord.jobs", "lua/lib.lua", "lua/cancel.lua") == lib + cancel
