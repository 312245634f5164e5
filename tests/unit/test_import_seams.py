"""The layering holds: the API and bot processes never load the crawler, and the import contracts in
.importlinter are kept (a broken one names the import chain)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRAWLER_STACK = ("httpx", "lxml", "workers.extraction", "workers.crawler", "workers.pipeline")


def loaded_after_import(*modules: str) -> list[str]:
    """Which of CRAWLER_STACK a fresh interpreter holds after importing `modules`."""
    probe = f"import sys, {', '.join(modules)}\nprint([m for m in {CRAWLER_STACK!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return ast.literal_eval(result.stdout.strip())


def test_the_api_and_the_bot_do_not_load_the_crawler():
    assert loaded_after_import("rpc.server", "bot.app") == []


def test_a_worker_does_load_it_so_the_probe_can_see_it():
    assert {"httpx", "workers.crawler", "workers.pipeline"} <= set(loaded_after_import("workers.pipeline"))


def test_the_import_contracts_are_kept():
    pytest.importorskip("importlinter")
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint is not None
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
