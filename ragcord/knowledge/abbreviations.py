"""Developers' abbreviations, spelled out for search: "start the REPL" finds "the interactive interpreter".

Users write `repl`, `regex`, `venv`, `cfg`, `deps`; manuals write the words. BM25 cannot match what is not
written, and a 6-layer embedder barely knows most of these. The question keeps its own words (a page that
does say "regex" still matches it) and gains the spelled-out ones in parentheses, for both searches.

Only abbreviations whose meaning does not depend on the site: everyday words that have a synonym ("folder"
for "directory", "leave" for "exit") are left alone, as measured (docs/quality-log.md, session 5): they
answered questions whose page the knowledge base does not have.
"""

from __future__ import annotations

import re

__all__ = ["ABBREVIATIONS", "spelled_out"]

ABBREVIATIONS: dict[str, str] = {
    "repl": "interactive interpreter",
    "regex": "regular expression",
    "regexp": "regular expression",
    "regexes": "regular expressions",
    "envvar": "environment variable",
    "envvars": "environment variables",
    "venv": "virtual environment",
    "virtualenv": "virtual environment",
    "config": "configuration",
    "cfg": "configuration",
    "conf": "configuration",
    "dir": "directory",
    "dirs": "directories",
    "arg": "argument",
    "args": "arguments",
    "param": "parameter",
    "params": "parameters",
    "lib": "library",
    "libs": "libraries",
    "pkg": "package",
    "pkgs": "packages",
    "deps": "dependencies",
    "repo": "repository",
    "repos": "repositories",
    "cli": "command line",
    "db": "database",
    "auth": "authentication",
    "func": "function",
    "funcs": "functions",
    "fn": "function",
    "impl": "implementation",
    "async": "asynchronous",
    "util": "utility",
    "utils": "utilities",
    "tmp": "temporary",
    "src": "source",
    "perms": "permissions",
    "passwd": "password",
}
_WORD = re.compile(r"[A-Za-z]+")


def spelled_out(query: str) -> str:
    """`query` with the meaning of each abbreviation it uses added once, in parentheses, at its end."""
    added: list[str] = []
    for word in _WORD.findall(query):
        meaning = ABBREVIATIONS.get(word.lower())
        if meaning and meaning not in added and meaning not in query.lower():
            added.append(meaning)
    return f"{query} ({', '.join(added)})" if added else query
