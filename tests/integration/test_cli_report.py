"""`ragcord report` against a running admin API, as an operator runs it (the console script, into a pipe)."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ragcord.bootstrap import bootstrap
from ragcord.questions import build_question_log
from tests.harness import admin_api

ROOT = Path(__file__).resolve().parents[2]


async def ragcord(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m cli` of this checkout (the installed console script may be another checkout's)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=Path(__file__).parent,  # no operator's .env
        timeout=120,
    )


@pytest.fixture
async def server(make_settings):
    settings = make_settings()
    services = bootstrap(settings)
    log = build_question_log(settings, services.redis)
    now = time.time()
    log.record("docs", "a1", "How do I install it?", user="1", found=True, at=now - 86400)
    log.record("docs", "a2", "How do I bake rye bread?", user="2", found=False, at=now - 60)
    log.mark("a1", "up")
    async with admin_api(settings, services) as (_, address):
        yield {"PATH": "/usr/bin:/bin", "RAGCORD_GRPC_ADDRESS": address, "RAGCORD_ADMIN_TOKEN": ""}
    services.close()


async def test_report_prints_the_days_and_the_unanswered_and_writes_a_chart(server, tmp_path):
    png = tmp_path / "chart.png"
    done = await ragcord(server, "report", "--kb", "docs", "--since", "7d", "--png", str(png))
    assert done.returncode == 0, done.stderr
    assert "total" in done.stdout and "How do I bake rye bread?" in done.stdout
    assert "Unanswered: 1 questions in 1 groups" in done.stdout
    if importlib.util.find_spec("matplotlib") is None:
        assert "no chart: matplotlib is not installed" in done.stderr and not png.exists()
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_report_explains_a_bad_since(server):
    done = await ragcord(server, "report", "--since", "last week")
    assert done.returncode == 2 and "use e.g. 7d, 12h, 2w or 2026-12-01" in done.stderr
