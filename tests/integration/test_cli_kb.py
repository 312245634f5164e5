"""`ragcord kb create|update|show|recrawl|schedule` against a running admin API (issue 22, part 6)."""

from __future__ import annotations

import asyncio
import json

from cli.main import main
from ragcord.bootstrap import bootstrap
from ragcord.crawls import start_crawl
from tests.harness import free_port
from tests.integration.test_cli_jobs import cli_env, serving  # noqa: F401 - cli_env is a fixture

SEED = "http://127.0.0.1:9/guides/"


async def test_the_kb_commands(cli_env, capsys):  # noqa: F811
    settings = cli_env
    services = bootstrap(settings)
    address = f"127.0.0.1:{free_port()}"

    async def run(*argv: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(main, [*argv, "--address", address])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    async with serving(settings, services, address):
        code, out, _ = await run(
            "kb",
            "create",
            "guides",
            "--description",
            "Our guides",
            "--instructions",
            "Be brief.\nnot found: Ask #help",
        )
        assert code == 0 and "created knowledge base guides" in out
        code, _, error = await run("kb", "create", "guides")
        assert code == 1 and "exists already" in error
        code, _, error = await run("kb", "update", "guides")
        assert code == 2 and "nothing to change" in error
        code, out, _ = await run("kb", "update", "guides", "--description", "All our guides")
        assert code == 0 and "description" in out

        job = start_crawl(
            settings, services.jobs, lambda *a: None, url=SEED, knowledge_base="guides", max_pages=5
        )
        services.jobs.cancel(job.id)
        code, out, _ = await run("kb", "schedule", "guides", "2h")
        assert code == 0 and "re-crawled every 2h" in out
        code, out, _ = await run("kb", "show", "guides")
        assert code == 0
        for text in (
            "guides: 0 pages, 0 chunks",
            "description: All our guides",
            "  not found: Ask #help",
            SEED,
            "max_pages 5",
            f"last crawl {job.id} cancelled",
            "re-crawled every 2h",
        ):
            assert text in out, out
        code, out, _ = await run("kb", "show", "guides", "--json")
        shown = json.loads(out)
        assert shown["name"] == "guides" and shown["sources"][0]["url"] == SEED
        code, out, _ = await run("kb", "schedule", "--json")
        assert [s["knowledge_base"] for s in json.loads(out)] == ["guides"]

        code, out, _ = await run("kb", "recrawl", "guides")
        (line,) = out.strip().splitlines()
        assert code == 0 and line.startswith("job ") and SEED in line
        code, _, error = await run("kb", "recrawl", "guides")
        assert code == 1 and "is QUEUED (job" in error  # one crawl of a knowledge base at a time

        code, out, _ = await run("kb", "schedule", "guides", "off")
        assert code == 0 and "no longer" in out
        code, _, error = await run("kb", "schedule", "guides", "soon")
        assert code == 1 and "not an interval" in error
