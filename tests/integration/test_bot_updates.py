"""/kb schedule and /kb updates (issue 22, part 5): the real discord.py bot against the loopback Discord,
real Redis, a real worker crawling a loopback site. After each re-crawl that changed anything the bot posts
one summary in the server's updates channel, once, also across a bot restart; re-crawls are incremental, so
the test edits its site between them."""

from __future__ import annotations

import asyncio
import time

from ragcord.crawls import recrawl_knowledge_base, start_crawl
from ragcord.schedules import Schedules
from tests.fresh_site import FreshSite, Page, html
from tests.harness import running_worker
from tests.integration.test_bot import bot_messages, running_bot

KB = "news"


def wait_job_end(services, job, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not (job := services.jobs.get(job.id)).state.terminal:
        assert time.monotonic() < deadline, f"crawl {job.id} did not end: {job}"
        time.sleep(0.1)
    return job


async def reply_to(fake, user, command: str, options: dict, subcommand: str) -> str:
    interaction = await fake.invoke_command(user, command, options, subcommand=subcommand)
    await fake.wait_for(lambda: interaction.responses)
    return interaction.responses[0]["data"]["content"]


async def test_schedule_and_updates_post_one_summary_per_recrawl_across_restarts(indexed):
    from workers.actors import declare_actors
    from workers.broker import build_broker

    settings = indexed.settings
    enqueue = declare_actors(build_broker(settings), settings).enqueue_page
    with running_worker(settings, indexed), FreshSite() as site:
        for name in "abc":
            site.set(f"/docs/{name}.html", Page(html(name, f"the first text of page {name}")))
        site.set("/docs/", Page(html("docs", "the index", [f"{n}.html" for n in "abc"])))
        async with running_bot(indexed, enqueue=enqueue, updates_poll_seconds=0.2) as world:
            fake, services = world.fake, world.services
            services.bindings.bind(fake.guild_id, KB)
            updates_channel = fake.add_channel("docs-updates")

            assert "Manage Server" in await reply_to(fake, fake.alice, "kb", {"every": "1d"}, "schedule")
            no_site = await reply_to(fake, fake.boss, "kb", {"every": "1d"}, "schedule")
            assert "no crawled site yet" in no_site
            on = await reply_to(fake, fake.boss, "kb", {"channel": updates_channel}, "updates")
            assert f"<#{updates_channel}>" in on

            # A first crawl is not a re-crawl: no summary.
            first = start_crawl(
                settings,
                indexed.jobs,
                enqueue,
                url=site.url("/docs/"),
                knowledge_base=KB,
                max_pages=10,
            )
            await asyncio.to_thread(wait_job_end, indexed, first)

            scheduled = await reply_to(fake, fake.boss, "kb", {"every": "12h"}, "schedule")
            assert f"`{KB}` is re-crawled every 12h" in scheduled
            schedules = Schedules(indexed.redis, prefix=settings.key_prefix)
            assert [(s.knowledge_base, s.every_seconds) for s in schedules.list()] == [(KB, 43200)]
            assert "every_seconds must be between" in await reply_to(
                fake, fake.boss, "kb", {"every": "5m"}, "schedule"
            )
            assert "not an interval" in await reply_to(fake, fake.boss, "kb", {"every": "soon"}, "schedule")

            # Nothing changed: a re-crawl that changes nothing posts nothing.
            (same,) = recrawl_knowledge_base(settings, indexed.jobs, enqueue, KB)
            assert (await asyncio.to_thread(wait_job_end, indexed, same)).pages_unchanged == 4
            await asyncio.sleep(1.0)  # five looks
            assert bot_messages(fake, updates_channel) == []

            site.set("/docs/a.html", Page(html("a", "the second text of page a")))
            site.set("/docs/c.html", Page(b"", status=404))
            (job,) = recrawl_knowledge_base(settings, indexed.jobs, enqueue, KB)
            await asyncio.to_thread(wait_job_end, indexed, job)
            await fake.wait_for(lambda: bot_messages(fake, updates_channel), timeout=30)
            (summary,) = bot_messages(fake, updates_channel)
            assert summary["content"] == (
                f"📚 Re-crawl of `{KB}` finished — pages: 1 updated, 0 added, 1 removed.\n"
                f"Changed: <{site.url('/docs/a.html')}>\nRemoved: <{site.url('/docs/c.html')}>"
            )
            assert summary["payload"]["allowed_mentions"] == {"parse": []}

            # The bot restarts: the summary is not posted again.
            await world.restart()
            await asyncio.sleep(1.0)  # five looks
            assert len(bot_messages(fake, updates_channel)) == 1

            # A re-crawl that ends while the bot is down is summarised when it is back.
            await world.bot.close()
            await asyncio.wait_for(world.task, 10)
            site.set("/docs/b.html", Page(html("b", "the second text of page b")))
            (missed,) = recrawl_knowledge_base(settings, indexed.jobs, enqueue, KB)
            await asyncio.to_thread(wait_job_end, indexed, missed)
            world.bot, world.task = await _start(world)
            await fake.wait_for(lambda: len(bot_messages(fake, updates_channel)) == 2, timeout=30)
            await asyncio.sleep(0.6)
            assert len(bot_messages(fake, updates_channel)) == 2

            off = await reply_to(fake, fake.boss, "kb", {"every": "off"}, "schedule")
            assert "no longer re-crawled" in off and schedules.list() == []
            assert "off" in await reply_to(fake, fake.boss, "kb", {}, "updates")


async def _start(world):
    from tests.integration.test_bot import start_bot

    return await start_bot(world.fake, world.services)
