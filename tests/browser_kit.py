"""Prerequisites of the JavaScript rendering tests: Debian's chromium (installed when missing) and docsify
(`npm pack`ed into a temporary folder). Where either cannot be had the test skips, never under CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.realsites.install import CannotInstall, _sudo
from workers.render import find_chromium

CI = bool(os.environ.get("CI"))
DOCSIFY_VERSION = "4.13.1"


def unavailable(reason: str) -> None:
    """Skip locally; under CI a missing prerequisite is a failure."""
    if CI:
        pytest.fail(f"{reason} (CI is set: this test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, apt-get installed when missing (as tests/realsites/install.py installs)."""
    found = find_chromium()
    if found is None:
        try:
            sudo = _sudo()
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for args in (
                [*sudo, "apt-get", "update", "-qq"],
                [*sudo, "apt-get", "install", "-y", "-qq", "chromium"],
            ):
                done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
                if done.returncode != 0:
                    raise CannotInstall(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-500:]}")
        except (CannotInstall, OSError, subprocess.TimeoutExpired) as exc:
            unavailable(f"Debian's chromium is not installed and cannot be installed here: {exc}")
        found = find_chromium()
        if found is None:
            unavailable("apt-get installed chromium but no chromium is on PATH")
    assert found is not None
    return found


class NoDocsify(Exception):
    """docsify could not be fetched (no npm, or the registry refused)."""


def pack_docsify(folder: Path) -> bytes:
    """docsify's lib/docsify.min.js, from `npm pack docsify@4.13.1` into `folder` (nothing is committed)."""
    npm = shutil.which("npm")
    if npm is None:
        raise NoDocsify("npm is not installed: docsify cannot be fetched")
    done = subprocess.run(
        [npm, "pack", f"docsify@{DOCSIFY_VERSION}", "--silent"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    tarball = folder / f"docsify-{DOCSIFY_VERSION}.tgz"
    if done.returncode != 0 or not tarball.is_file():
        raise NoDocsify(f"npm pack docsify@{DOCSIFY_VERSION} failed: {done.stderr[-500:]}")
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("package/lib/docsify.min.js")
        if member is None:
            raise NoDocsify(f"docsify@{DOCSIFY_VERSION} has no lib/docsify.min.js")
        return member.read()


@pytest.fixture(scope="session")
def docsify_js(tmp_path_factory) -> bytes:
    try:
        return pack_docsify(tmp_path_factory.mktemp("docsify"))
    except (NoDocsify, OSError, subprocess.TimeoutExpired) as exc:
        unavailable(str(exc))
        raise


PAGES = {
    "README.md": """# Quillstack

Quillstack is a task queue for Python services. This home page explains what it is and where to start.

Read the [installation guide](install.md) first, then the [configuration reference](config.md).
""",
    "install.md": """# Installation

Install Quillstack with `pip install quillstack`, then start a worker with quillworker --concurrency 4.

## Requirements

Quillstack needs Python 3.11 and a Redis server that every worker process can reach.

Next: [the scheduler](scheduler.md).
""",
    "config.md": """# Configuration

The file quill.toml sets the broker URL, the result backend and the retry policy of every task.
""",
    "scheduler.md": """# Scheduler

The periodic scheduler runs in its own process, quillbeat, so two workers never run a job twice.
""",
    "_sidebar.md": """- [Home](/)
- [Installation](install.md)
- [Configuration](config.md)
""",
}
# Each page's words, as the crawl must index them (the scheduler page is only linked from a page's text).
WORDS = {
    "": "task queue for Python services",
    "#/install": "pip install quillstack",
    "#/config": "quill.toml sets the broker URL",
    "#/scheduler": "quillbeat",
}


def docsify_site(root: Path, script: bytes, other: str) -> Path:
    """A Docsify site: an empty shell page, the library, markdown pages; it also asks `other` for a script."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "docsify.min.js").write_bytes(script)
    for name, text in PAGES.items():
        (root / name).write_text(text)
    (root / "index.html").write_text(
        f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Quillstack documentation</title>
<script src="{other}/analytics.js"></script></head>
<body><div id="app">Loading…</div>
<script>window.$docsify = {{ name: "Quillstack", loadSidebar: true }};</script>
<script src="docsify.min.js"></script>
</body></html>
"""
    )
    return root
