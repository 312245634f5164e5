"""`ragcord watch`, `cancel` and the listings against a running admin API: what an operator sees."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest

from cli.main import main
from ragcord.bootstrap import bootstrap
from rpc.server import build_server
from tests.harness import crawl, free_port, running_worker
from tests.integration.test_eval_command import SITE
from tests.sitekit import FixtureSite


@pytest.fixture
def cli_env(make_settings, monkeypatch):
    """Settings for the server, and the CLI's environment pointing at the same Redis, with no token."""
    settings = make_settings()
    monkeypatch.setenv("RAGCORD_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("RAGCORD_KEY_PREFIX", settings.key_prefix)
    monkeypatch.setenv("RAGCORD_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RAGCORD_EMBEDDER", "none")
    monkeypatch.setenv("RAGCORD_ADMIN_TOKEN", "")
    monkeypatch.setenv("COLUMNS", "100")
    return settings


@contextlib.asynccontextmanager
async def serving(settings, services, address: str):
    """The admin server on a given address, so a test can stop it and start another in its place."""
    server, _ = await build_server(settings.model_copy(update={"grpc_address": address}), services)
    await server.start()
    try:
        yield
    finally:
        await server.stop(grace=0.5)


async def wait_for(capsys, text: str, seen: list[str], timeout: float = 60) -> str:
    """Collect the CLI's output (from its thread) until `text` shows up."""
    deadline = time.monotonic() + timeout
    while text not in "".join(seen):
        assert time.monotonic() < deadline, f"{text!r} never shown; output so far:\n{''.join(seen)}"
        await asyncio.sleep(0.1)
        captured = capsys.readouterr()
        seen.append(captured.out + captured.err)
    return "".join(seen)


async def test_watch_says_it_is_reconnecting_while_the_server_is_down_and_finishes_after_restart(
    cli_env, capsys
):
    settings = cli_env
    services = bootstrap(settings)
    address = f"127.0.0.1:{free_port()}"
    seen: list[str] = []
    with FixtureSite(root=SITE) as site:
        async with serving(settings, services, address):
            assert (
                await asyncio.to_thread(
                    main,
                    ["crawl", site.url("/docs/"), "--kb", "docs", "--max-pages", "5", "--address", address],
                )
                == 0
            )
            job_id = (await wait_for(capsys, "started job", seen)).split("started job ")[1].split(":")[0]
            watch = asyncio.create_task(asyncio.to_thread(main, ["watch", job_id, "--address", address]))
            await asyncio.sleep(1)  # no worker yet: the job waits QUEUED while the watch follows it
        # The server is gone: the watch says so instead of counting time.
        down = await wait_for(capsys, f"reconnecting to {address} (attempt 2)", seen)
        assert f"reconnecting to {address} (attempt 1)" in down
        async with serving(settings, services, address):
            await wait_for(capsys, f"reconnected to {address}", seen)
            with running_worker(settings, services):
                status = await asyncio.wait_for(watch, timeout=120)
    out = "".join(seen) + capsys.readouterr().out
    assert status == 0, out
    assert f"job {job_id} SUCCEEDED: " in out
    services.close()


async def test_the_summary_gives_the_pace_the_max_pages_cut_and_why_pages_were_skipped(cli_env, capsys):
    settings = cli_env
    services = bootstrap(settings)
    with FixtureSite(root=SITE) as site:
        whole = await asyncio.to_thread(crawl, settings, services, site.url("/docs/"), "docs", max_pages=100)
        cut = await asyncio.to_thread(crawl, settings, services, site.url("/docs/"), "small", max_pages=3)
    async with serving(settings, services, address := f"127.0.0.1:{free_port()}"):
        assert await asyncio.to_thread(main, ["watch", whole.id, "--address", address]) in (0, 1)
        brief = capsys.readouterr().out
        await asyncio.to_thread(main, ["watch", whole.id, "--address", address, "--verbose"])
        verbose = capsys.readouterr().out
        await asyncio.to_thread(main, ["watch", cut.id, "--address", address])
        small = capsys.readouterr().out

    assert "pages/s)" in brief
    # Into a pipe no bar is drawn (its redraws and its cut line are for a terminal): plain lines instead.
    assert "━" not in brief
    assert any(line.startswith("running: ") and " discovered" in line for line in brief.splitlines()), brief
    assert "disallowed by robots.txt (1)" in brief  # /docs/private/secret.html
    assert "/docs/private/secret.html" not in brief and "/docs/private/secret.html" in verbose
    failed = next(line for line in brief.splitlines() if line.startswith("failed: "))
    assert "HTTP 404" in failed or "HTTP 410" in failed, failed
    assert "raise --max-pages" not in brief
    assert "3 of at least " in small and "raise --max-pages" in small
    services.close()


async def test_watch_and_cancel_of_an_unknown_job_say_where_the_jobs_are_and_draw_nothing(cli_env, capsys):
    settings = cli_env
    async with serving(settings, None, address := f"127.0.0.1:{free_port()}"):
        watched = await asyncio.to_thread(main, ["watch", "doesnotexist", "--address", address])
        watch = capsys.readouterr()
        cancelled = await asyncio.to_thread(main, ["cancel", "doesnotexist", "--address", address])
        cancel = capsys.readouterr()
    assert watched == cancelled == 1
    assert watch.out == "" and cancel.out == ""  # no progress bar before the error
    for output in (watch.err, cancel.err):
        assert "no job doesnotexist" in output and "ragcord jobs" in output


async def test_listings_print_tab_separated_rows_into_a_pipe_and_json_on_request(cli_env, capsys):
    settings = cli_env
    services = bootstrap(settings)
    with FixtureSite(root=SITE) as site:
        job = await asyncio.to_thread(crawl, settings, services, site.url("/docs/"), "docs", max_pages=4)
    async with serving(settings, services, address := f"127.0.0.1:{free_port()}"):
        outputs = {}
        for command in (
            ["jobs"],
            ["jobs", "--json"],
            ["sources", "--kb", "docs"],
            ["sources", "--kb", "docs", "--json"],
            ["kbs"],
            ["kbs", "--json"],
        ):
            assert await asyncio.to_thread(main, [*command, "--address", address]) == 0
            outputs[" ".join(command)] = capsys.readouterr().out

    header, *rows = outputs["jobs"].splitlines()
    assert header.split("\t") == [
        "id",
        "state",
        "kb",
        "url",
        "done",
        "skipped",
        "failed",
        "chunks",
        "created",
    ]
    assert [row.split("\t")[:4] for row in rows] == [[job.id, "SUCCEEDED", "docs", site.url("/docs/")]]
    [listed] = json.loads(outputs["jobs --json"])
    assert (
        listed["id"] == job.id
        and listed["state"] == "JOB_STATE_SUCCEEDED"
        and listed["knowledge_base"] == "docs"
    )

    header, *rows = outputs["sources --kb docs"].splitlines()
    assert header.split("\t") == ["url", "title", "chunks", "indexed"]
    sources = json.loads(outputs["sources --kb docs --json"])
    assert sorted(row.split("\t")[0] for row in rows) == sorted(s["url"] for s in sources)
    assert len(sources) == job.pages_done and all("chunk_count" in s for s in sources)

    assert outputs["kbs"].splitlines()[0].split("\t") == [
        "knowledge base",
        "chunks",
        "Discord servers",
        "description",
    ]
    assert {"name": "docs"}.items() <= json.loads(outputs["kbs --json"])[0].items()
    services.close()
