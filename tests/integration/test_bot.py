"""The real discord.py bot against a Discord that the tests run on loopback (tests/discord_fake.py),
answering from the indexed fixture site with memory in the real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.app import build_bot_services
from bot.client import build_bot
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.stores import StoredChunk
from rpc.v1 import admin_pb2 as pb
from tests.discord_fake import FakeDiscord
from tests.harness import admin_api, running_worker
from tests.integration.conftest import SITE, canonical
from tests.openai_fake import FakeOpenAI
from tests.sitekit import FixtureSite

VENV_Q = "How do I make a separate Python environment for my Quillstack project?"
FOLLOW_UP = "and how do I activate it?"


@dataclasses.dataclass
class World:
    fake: FakeDiscord
    bot: object
    services: object  # BotServices
    task: asyncio.Task | None = None

    async def restart(self) -> None:
        """Stop the bot and start a new one on the same state (as after a process restart)."""
        await stop_bot(self)
        self.bot, self.task = await start_bot(self.fake, self.services)


async def start_bot(fake: FakeDiscord, services):
    bot = build_bot(services, guild_ready_timeout=0.1)
    task = asyncio.create_task(bot.start(fake.token))
    deadline = time.monotonic() + 30
    while not bot.is_ready():
        if task.done():
            task.result()
        assert time.monotonic() < deadline, "the bot did not get ready"
        await asyncio.sleep(0.05)
    return bot, task


async def stop_bot(world: World) -> None:
    await world.bot.close()
    if world.task is not None:
        await asyncio.wait_for(world.task, 10)


def process_env(fake: FakeDiscord, settings, **extra: str) -> dict[str, str]:
    """The environment of a `ragcord` process pointed at the fake Discord and the test's Redis."""
    return {
        **os.environ,
        "DISCORD_TOKEN": fake.token,
        "RAGCORD_DISCORD_API_BASE_URL": fake.api_base,
        "RAGCORD_DISCORD_GATEWAY_URL": fake.gateway_url,
        "RAGCORD_REDIS_URL": settings.redis_url,
        "RAGCORD_KEY_PREFIX": settings.key_prefix,
        "RAGCORD_DATA_DIR": str(settings.data_dir),
        "RAGCORD_METRICS_ADDRESS": "",
        "RAGCORD_WORKER_METRICS_PORT": "0",
        **extra,
    }


def make_services(indexed, fake: FakeDiscord, *, enqueue=None, **overrides):
    settings = indexed.settings.model_copy(
        update={
            "discord_token": SecretStr(fake.token),
            "discord_guild_ids": [int(fake.guild_id)],
            "ask_rate_limit": 50,
            "stream_edit_seconds": 0.05,
            **overrides,
        }
    )
    services = build_bot_services(
        settings, dataclasses.replace(indexed, settings=settings), enqueue=enqueue or (lambda *args: None)
    )
    services.bindings.bind(fake.guild_id, "docs")
    return services


@contextlib.asynccontextmanager
async def running_bot(indexed, *, enqueue=None, **overrides) -> AsyncIterator[World]:
    """A fake Discord and the real bot connected to it, with these settings overrides."""
    async with FakeDiscord() as fake:
        undo = fake.patch_discord()
        services = make_services(indexed, fake, enqueue=enqueue, **overrides)
        bot, task = await start_bot(fake, services)
        world = World(fake, bot, services, task)
        try:
            yield world
        finally:
            await stop_bot(world)
            undo()


@pytest.fixture
async def world(indexed):
    async with running_bot(indexed) as world:
        yield world


def bot_messages(fake: FakeDiscord, channel_id: str) -> list[dict]:
    return [m for m in fake.messages if m["channel_id"] == str(channel_id)]


async def ask_command(fake: FakeDiscord, user: dict, question: str, **kw) -> dict:
    """/ask, then wait for the answer's thread; returns the answer message."""
    before = len(fake.threads)
    interaction = await fake.invoke_command(user, "ask", {"question": question}, **kw)
    await fake.wait_for(lambda: len(fake.threads) > before, timeout=30)
    assert interaction.responses[0]["type"] == 5  # deferred at once
    return interaction.followups[0]


async def say_in(fake: FakeDiscord, user: dict, channel_id: str, content: str, **kw) -> dict:
    count = len(bot_messages(fake, channel_id))
    await fake.send_user_message(user, content, channel_id=channel_id, **kw)
    await fake.wait_for(lambda: len(bot_messages(fake, channel_id)) > count, timeout=30)
    return bot_messages(fake, channel_id)[-1]


async def test_ask_opens_a_thread_that_remembers_the_conversation(world):
    fake, services = world.fake, world.services
    answer = await ask_command(fake, fake.alice, VENV_Q)
    assert "**Sources**" in answer["content"] and "/docs/virtualenv.html" in answer["content"]
    thread_id = answer["id"]
    assert fake.threads[thread_id]["parent_id"] == fake.channel_id
    assert fake.threads[thread_id]["name"] == VENV_Q[:90]

    follow = await say_in(fake, fake.alice, thread_id, FOLLOW_UP)
    assert "/docs/virtualenv.html" in follow["content"]
    turns = services.ask.memory.load(thread_id).turns
    assert [t.role for t in turns] == ["user", "assistant", "user", "assistant"]

    forget = await fake.invoke_command(fake.alice, "forget", {}, channel_id=thread_id)
    await fake.wait_for(lambda: forget.responses)
    assert "forgotten" in forget.responses[0]["data"]["content"]
    assert services.ask.memory.load(thread_id).turns == []
    await say_in(fake, fake.alice, thread_id, FOLLOW_UP)
    assert len(services.ask.memory.load(thread_id).turns) == 2  # the follow-up stood alone this time


async def test_every_message_is_sent_with_mentions_disabled_even_when_the_docs_ping(world, indexed):
    fake, services = world.fake, world.services
    url = "https://docs.example.com/announcements.html"
    text = "When the deploy is done, ping @everyone and <@&123> in the release channel with the notes."
    vector = indexed.embedder.embed([text])[0]
    indexed.store.replace_page(
        "pings",
        url,
        [
            StoredChunk(
                id=chunk_id(url, 0),
                url=url,
                title="Announcements",
                heading="",
                chunk_index=0,
                text=text,
                content_hash="h",
                indexed_at=0.0,
                vector=vector,
            )
        ],
    )
    services.bindings.bind(fake.guild_id, "pings")
    answer = await ask_command(fake, fake.alice, "Who do I ping when the deploy is done?")
    assert "@everyone" in answer["content"]
    assert fake.messages and all(m["payload"].get("allowed_mentions") == {"parse": []} for m in fake.messages)


async def test_a_mention_in_a_channel_opens_a_thread_and_other_messages_are_ignored(world):
    fake = world.fake
    await fake.send_user_message(fake.alice, "just chatting, no question for the bot")
    await fake.send_user_message(fake.bot_user, "a bot talking")  # bots are ignored
    question = await fake.send_user_message(
        fake.alice, f"<@{fake.bot_user['id']}> {VENV_Q}", mention_bot=True
    )
    await fake.wait_for(lambda: question["id"] in fake.threads, timeout=30)
    await fake.wait_for(lambda: bot_messages(fake, question["id"]), timeout=30)
    assert "/docs/virtualenv.html" in bot_messages(fake, question["id"])[0]["content"]
    assert bot_messages(fake, fake.channel_id) == []  # the answer went into the thread


async def test_a_knowledge_base_another_server_owns_is_refused_for_asking_binding_and_crawling(world):
    fake, owners = world.fake, world.services.bindings.owners
    owners.claim("docs", "424242")  # another Discord server crawled "docs" first
    try:
        asked = await fake.invoke_command(fake.alice, "ask", {"question": VENV_Q})
        await fake.wait_for(lambda: asked.responses)
        mention = await fake.send_user_message(
            fake.alice, f"<@{fake.bot_user['id']}> {VENV_Q}", mention_bot=True
        )
        await fake.wait_for(
            lambda: any(m.get("message_reference") for m in bot_messages(fake, fake.channel_id)), timeout=30
        )
        bound = await fake.invoke_command(fake.boss, "kb", {"name": "docs"}, subcommand="bind")
        crawled = await fake.invoke_command(fake.boss, "crawl", {"url": "https://docs.example.com/"})
        await fake.wait_for(lambda: bound.responses and crawled.responses)
    finally:
        owners.release("docs")

    response = asked.responses[0]
    assert response["type"] == 4 and response["data"]["flags"] & 64  # ephemeral, nothing answered
    assert "belongs to another Discord server" in response["data"]["content"]
    [reply] = [
        m
        for m in bot_messages(fake, fake.channel_id)
        if m.get("message_reference", {}).get("message_id") == mention["id"]
    ]
    assert "belongs to another Discord server" in reply["content"] and mention["id"] not in fake.threads
    assert "belongs to another Discord server" in bound.responses[0]["data"]["content"]
    assert "I can't crawl that" in crawled.responses[0]["data"]["content"]
    assert not any("Quillstack" in m["content"] for m in fake.messages)  # none of the other's docs


async def test_long_streamed_answers_grow_by_edits_and_arrive_split(indexed):
    long_reply = " ".join(
        f"Step {i}: run the installer and check the output carefully [1]." for i in range(60)
    )
    assert len(long_reply) > 3000
    with FakeOpenAI(reply=lambda body: long_reply) as llm:
        async with running_bot(
            indexed, answerer="openai", openai_base_url=llm.base_url, openai_max_retries=0
        ) as world:
            fake = world.fake
            answer = await ask_command(fake, fake.alice, "How do I install Quillstack?")
            thread_id = answer["id"]
            await fake.wait_for(lambda: bot_messages(fake, thread_id), timeout=30)
    assert any(edit["message_id"] == answer["id"] for edit in fake.edits)  # it grew while being written
    parts = [answer, *bot_messages(fake, thread_id)]
    assert all(len(p["content"]) <= 2000 for p in parts)
    assert "**Sources**" in parts[-1]["content"]
    assert parts[-1]["components"]  # feedback buttons under the last part


async def test_a_user_asking_too_fast_gets_a_friendly_ephemeral_reply(indexed):
    async with running_bot(indexed, ask_rate_limit=1) as world:
        fake = world.fake
        await ask_command(fake, fake.alice, VENV_Q)
        second = await fake.invoke_command(fake.alice, "ask", {"question": "and again?"})
        await fake.wait_for(lambda: second.responses)
    response = second.responses[0]
    assert response["type"] == 4 and response["data"]["flags"] & 64  # ephemeral
    assert "try again in" in response["data"]["content"]


async def test_crawl_and_kb_need_manage_server_and_crawl_shows_live_progress(indexed):
    from workers.actors import declare_actors
    from workers.broker import build_broker

    enqueue = declare_actors(build_broker(indexed.settings), indexed.settings).enqueue_page
    with running_worker(indexed.settings, indexed) as _, FixtureSite(root=SITE, delay=0.1) as site:
        async with running_bot(indexed, enqueue=enqueue) as world:
            fake = world.fake
            denied = await fake.invoke_command(fake.alice, "crawl", {"url": site.url("/docs/")})
            await fake.wait_for(lambda: denied.responses)
            assert "Manage Server" in denied.responses[0]["data"]["content"]
            denied_kb = await fake.invoke_command(fake.alice, "kb", {"name": "other"}, subcommand="bind")
            await fake.wait_for(lambda: denied_kb.responses)
            assert "Manage Server" in denied_kb.responses[0]["data"]["content"]

            bound = await fake.invoke_command(fake.boss, "kb", {"name": "crawled"}, subcommand="bind")
            await fake.wait_for(lambda: bound.responses)
            assert "crawled" in bound.responses[0]["data"]["content"]
            started = await fake.invoke_command(
                fake.boss, "crawl", {"url": site.url("/docs/"), "max_pages": 8}
            )
            await fake.wait_for(lambda: started.responses)
            await fake.wait_for(lambda: any("finished" in m["content"] for m in fake.messages), timeout=60)
    # The seed page links to more than 7 docs pages, so exactly 8 are reserved, and each one indexes.
    final = next(m for m in fake.messages if "finished" in m["content"])
    chunks = indexed.store.count_chunks("crawled")
    assert final["content"] == (
        f"Crawl of <{site.url('/docs/')}> into `crawled` finished: "
        f"8/8 pages · 8 indexed · 0 skipped · 0 failed · {chunks} chunks"
    )
    assert len(indexed.store.list_sources("crawled")) == 8 and chunks > 0
    edits = [e for e in fake.edits if e["message_id"] == final["id"]]
    assert edits, "progress was shown by editing one message"
    assert edits[-1]["payload"]["content"] == final["content"]
    shown = [re.search(r"(\d+)/(\d+) pages", e["payload"]["content"]).groups() for e in edits]
    done = [int(finished) for finished, _ in shown]
    assert done == sorted(done) and done[-1] == 8  # progress only moves forward, to the end
    gaps = [b["at"] - a["at"] for a, b in zip(edits, edits[1:], strict=False)]
    assert all(gap >= 0.8 for gap in gaps[:-1])  # at most one edit a second (the last is the final state)


async def test_feedback_buttons_record_votes_survive_a_restart_and_reach_the_admin_api(world, indexed):
    fake, services = world.fake, world.services
    answer = await ask_command(fake, fake.alice, VENV_Q)
    custom_id = answer["components"][0]["components"][0]["custom_id"]
    assert custom_id.startswith("ragcord:fb:up:")
    await world.restart()
    click = await fake.click_button(fake.alice, answer, custom_id)
    await fake.wait_for(lambda: click.responses)
    assert "Thanks" in click.responses[0]["data"]["content"]
    answer_id = custom_id.rsplit(":", 1)[1]
    record = services.feedback.get(answer_id)
    assert (record.up, record.down) == (1, 0) and record.question == VENV_Q
    assert any(canonical(s.url) == "/docs/virtualenv.html" for s in services.feedback.per_source("docs"))
    async with admin_api(indexed.settings, indexed) as (stub, _):
        listed = await stub.ListFeedback(pb.ListFeedbackRequest(knowledge_base="docs"))
    entry = next(e for e in listed.entries if e.answer_id == answer_id)
    assert (entry.up, entry.down, entry.question) == (1, 0, VENV_Q)
    assert any(canonical(s.url) == "/docs/virtualenv.html" and s.up >= 1 for s in listed.sources)


async def test_after_a_restart_and_a_dropped_gateway_the_bot_still_answers_in_its_threads(world):
    fake = world.fake
    answer = await ask_command(fake, fake.alice, VENV_Q)
    thread_id = answer["id"]
    await fake.drop_gateway()
    await fake.wait_for(lambda: fake.resumes >= 1, timeout=30)
    follow = await say_in(fake, fake.alice, thread_id, FOLLOW_UP)
    assert "/docs/virtualenv.html" in follow["content"]
    await world.restart()
    again = await say_in(fake, fake.alice, thread_id, "and how do I leave it again?")
    # Only the remembered conversation says what "it" is: the answer is the venv page's `deactivate`.
    assert "deactivate" in again["content"]
    assert "**Sources**" in again["content"] and "/docs/virtualenv.html" in again["content"]


async def test_a_rate_limited_rest_call_is_waited_out(world):
    fake = world.fake
    answer = await ask_command(fake, fake.alice, VENV_Q)
    path = f"/channels/{answer['id']}/messages"
    fake.rate_limit_next("POST", re.escape(path), retry_after=0.3)
    follow = await say_in(fake, fake.alice, answer["id"], FOLLOW_UP)
    assert "/docs/virtualenv.html" in follow["content"]  # the user still gets the answer
    posts = [r for r in fake.requests if r["method"] == "POST" and r["path"] == path]
    assert [r["status"] for r in posts] == [429, 200]
    assert posts[1]["at"] - posts[0]["at"] >= 0.3  # it waited the retry_after out before sending again


async def test_a_new_bot_process_answers_in_an_old_thread(world, indexed, tmp_path):
    fake = world.fake
    answer = await ask_command(fake, fake.alice, VENV_Q)
    await stop_bot(world)
    settings = world.services.settings
    env = process_env(
        fake, settings, RAGCORD_EMBEDDER="local", RAGCORD_DISCORD_GUILD_IDS=f"[{fake.guild_id}]"
    )
    log = tmp_path / "bot.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "ragcord"), "bot"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await fake.wait_for(lambda: fake.identifies >= 2, timeout=60)
        follow = await say_in(fake, fake.alice, answer["id"], FOLLOW_UP)
        assert "/docs/virtualenv.html" in follow["content"], log.read_text()
    finally:
        process.terminate()
        process.wait(20)
        world.bot = build_bot(world.services, guild_ready_timeout=0.1)  # the fixture closes a bot
        world.task = None


async def test_when_the_model_fails_the_user_hears_about_it(indexed):
    with FakeOpenAI() as llm:
        llm.fail_next(500, times=10)
        async with running_bot(
            indexed, answerer="openai", openai_base_url=llm.base_url, openai_max_retries=0
        ) as world:
            fake = world.fake
            interaction = await fake.invoke_command(fake.alice, "ask", {"question": "How do I install it?"})
            await fake.wait_for(lambda: interaction.followups, timeout=30)
    assert "Sorry, I can't answer right now" in interaction.followups[0]["content"]
    assert "HTTP 500" in interaction.followups[0]["content"]


async def test_the_bot_explains_a_refused_privileged_intent(indexed, tmp_path):
    async with FakeDiscord(allow_message_content=False) as fake:
        settings = indexed.settings
        env = process_env(fake, settings, RAGCORD_EMBEDDER="none")
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "ragcord"),
            "bot",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode != 0
    assert b"Message Content Intent" in output


async def test_ragcord_serve_starts_the_bot_when_a_token_is_set(indexed, tmp_path):
    from tests.harness import free_port

    async with FakeDiscord() as fake:
        settings = indexed.settings
        env = process_env(
            fake,
            settings,
            RAGCORD_DATA_DIR=str(tmp_path / "data"),
            RAGCORD_EMBEDDER="none",
            RAGCORD_GRPC_ADDRESS=f"127.0.0.1:{free_port()}",
            RAGCORD_WORKER_PROCESSES="1",
            RAGCORD_WORKER_THREADS="1",
        )
        log = tmp_path / "serve.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "ragcord"), "serve"],
                env=env,
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            await fake.wait_for(lambda: fake.identifies >= 1 and "ask" in fake.commands, timeout=60)
        finally:
            process.terminate()
            code = await asyncio.to_thread(process.wait, 40)
    assert code == 0, log.read_text()
