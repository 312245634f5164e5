"""The Discord fake (tests/discord_fake.py) against the real discord.py client."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.discord_fake import FakeDiscord


def make_bot(*, message_content: bool = True, **options) -> commands.Bot:
    intents = discord.Intents.default()
    intents.message_content = message_content
    return commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.1, **options)


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, bot: commands.Bot):
    """Start the bot, wait until it is ready; always close it and wait for bot.start() to return."""
    task = asyncio.create_task(bot.start(fake.token))
    try:
        await fake.wait_for(lambda: bot.is_ready() or task.done(), timeout=10)
        if task.done():
            task.result()
        yield task
    finally:
        await bot.close()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)


async def start_failing(fake: FakeDiscord, bot: commands.Bot, token: str | None = None) -> BaseException:
    """bot.start() that is expected to fail; returns the exception (the bot is closed afterwards)."""
    try:
        await asyncio.wait_for(bot.start(token or fake.token), 10)
    except Exception as exc:  # noqa: BLE001 - returned for the test to inspect
        return exc
    finally:
        await bot.close()
    raise AssertionError("bot.start() returned without an error")


def collect(bot: commands.Bot, event: str) -> list:
    """Everything `event` delivers from now on (the first argument of each call)."""
    items: list = []

    async def listener(*args) -> None:
        items.append(args[0] if args else None)

    bot.add_listener(listener, f"on_{event}")
    return items


@pytest.fixture
async def fake():
    async with FakeDiscord() as fake:
        with fake.patch_discord():
            yield fake
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leftover == [], f"tasks leaked: {leftover}"


async def test_rest_answers_plain_json_checks_the_token_and_records_unknown_routes(fake):
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bot {fake.token}"}
        async with session.get(f"{fake.api_base}/users/@me", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/json"  # exactly: discord.py compares
            assert (await resp.json())["id"] == fake.bot_user["id"]
        async with session.get(f"{fake.api_base}/users/@me", headers={"Authorization": "Bot nope"}) as resp:
            assert resp.status == 401
        async with session.post(f"{fake.api_base}/guilds/1/bans", headers=headers, json={}) as resp:
            assert resp.status == 404
            assert await resp.json() == {"message": "404: Not Found", "code": 0}
    assert [(r["method"], r["path"]) for r in fake.unhandled] == [("POST", "/guilds/1/bans")]
    assert fake.requests[0]["headers"]["Authorization"] == f"Bot {fake.token}"


async def test_patch_discord_redirects_and_restores():
    import discord.gateway
    import discord.http

    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as fake:
        undo = fake.patch_discord()
        assert discord.http.Route.BASE == fake.api_base == f"http://127.0.0.1:{fake.port}/api/v10"
        assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == fake.gateway_url
        undo()
        undo()  # idempotent
    assert (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == (base, gateway)


async def test_bot_logs_in_gets_ready_and_the_guild(fake):
    bot = make_bot()
    async with running(fake, bot):
        assert bot.user.id == int(fake.bot_user["id"]) and bot.user.bot
        assert bot.application_id == int(fake.application_id)
        guild = bot.get_guild(int(fake.guild_id))
        assert guild is not None and guild.name == "Fake Guild"
        assert [c.name for c in guild.text_channels] == ["general"]
        assert guild.me is not None and not guild.me.guild_permissions.manage_guild
        assert guild.get_member(int(fake.alice["id"])) is None  # no members intent: only the bot's own member
        assert guild.member_count == 4
        assert fake.identifies == 1 and fake.resumes == 0
        paths = [(r["method"], r["path"]) for r in fake.requests]
        assert ("GET", "/users/@me") in paths and ("GET", "/oauth2/applications/@me") in paths
        assert fake.gateway_connections[0]["query"] == {
            "v": "10",
            "encoding": "json",
            "compress": "zlib-stream",
        }
        assert fake.identify_payloads[0]["intents"] == bot.intents.value
        channel_id = fake.add_channel("support")
        await fake.wait_for(lambda: bot.get_channel(int(channel_id)) is not None, timeout=5)
    assert fake.unhandled == []


async def test_messages_in_and_out_with_mentions_disabled(fake):
    bot = make_bot(allowed_mentions=discord.AllowedMentions.none())
    received: list[discord.Message] = []

    @bot.event
    async def on_message(message: discord.Message) -> None:
        received.append(message)
        if message.author.bot:
            return
        await message.reply(f"hi <@{fake.alice['id']}> and @everyone")

    async with running(fake, bot):
        sent = await fake.send_user_message(fake.alice, "hello there")
        reply = await fake.wait_for_message(lambda m: m["content"].startswith("hi"))
        first = received[0]
        assert first.content == "hello there" and first.author.id == int(fake.alice["id"])
        assert isinstance(first.author, discord.Member) and first.channel.id == int(fake.channel_id)
        assert reply["payload"]["allowed_mentions"] == {"parse": []}
        assert reply["mentions"] == [] and reply["mention_everyone"] is False
        assert reply["type"] == 19 and reply["referenced_message"]["id"] == sent["id"]
        assert reply["author"]["id"] == fake.bot_user["id"] and reply["channel_id"] == fake.channel_id
        # the bot receives its own message back over the gateway, as from real Discord
        await fake.wait_for(lambda: any(m.id == int(reply["id"]) for m in received))

        channel = bot.get_channel(int(fake.channel_id))
        message = await channel.send("pinging <@{}>".format(fake.boss["id"]))
        assert fake.messages[-1]["mentions"] == []  # the bot-wide AllowedMentions.none()
        await message.edit(content="edited", allowed_mentions=discord.AllowedMentions(users=True))
        assert fake.messages[-1]["content"] == "edited" and fake.edits[-1]["message_id"] == str(message.id)
        assert fake.messages[-1]["edited_timestamp"] is not None
        with pytest.raises(discord.HTTPException) as too_long:
            await channel.send("x" * 2001)
        assert too_long.value.code == 50035

        await channel.typing()
        await message.add_reaction("👀")
        assert fake.messages[-1]["reactions"] == [
            {"emoji": {"id": None, "name": "👀"}, "count": 1, "me": True}
        ]
        history = [m.content async for m in channel.history(limit=3)]
        assert history[0] == "edited" and history[-1] == "hello there"
        assert (await channel.fetch_message(int(sent["id"]))).content == "hello there"
        await message.delete()
        assert fake.deletions[-1]["message_id"] == str(message.id) and fake.messages[-1]["deleted"]
        with pytest.raises(discord.NotFound):
            await channel.fetch_message(message.id)
    assert fake.unhandled == []


async def test_content_is_blank_without_the_message_content_intent_unless_the_bot_is_mentioned(fake):
    bot = make_bot(message_content=False)
    received = collect(bot, "message")
    async with running(fake, bot):
        await fake.send_user_message(fake.alice, "secret words")
        await fake.send_user_message(fake.alice, "hey bot", mention_bot=True)
        await fake.wait_for(lambda: len(received) == 2)
    assert [m.content for m in received] == ["", f"<@{fake.bot_user['id']}> hey bot"]


async def test_a_thread_from_a_message_is_known_before_create_thread_returns(fake):
    bot = make_bot()
    threads: list[int] = []

    @bot.event
    async def on_message(message: discord.Message) -> None:
        if message.author.bot or isinstance(message.channel, discord.Thread):
            return
        thread = await message.create_thread(name="About: " + message.content, auto_archive_duration=1440)
        threads.append(bot.get_channel(thread.id) is not None)
        await thread.send("answer in the thread")

    async with running(fake, bot):
        question = await fake.send_user_message(fake.alice, "how?")
        answer = await fake.wait_for_message(lambda m: m["channel_id"] == question["id"])
        assert threads == [True]
        thread = fake.threads[question["id"]]
        assert thread["parent_id"] == fake.channel_id and thread["name"] == "About: how?"
        assert thread["message_count"] == 1 and answer["content"] == "answer in the thread"
        cached = bot.get_channel(int(question["id"]))
        assert isinstance(cached, discord.Thread) and cached.parent_id == int(fake.channel_id)

        # a user follows up in the thread: the message arrives with the thread as its channel
        seen = collect(bot, "message")
        await fake.send_user_message(fake.boss, "thanks", channel_id=question["id"])
        await fake.wait_for(lambda: any(m.content == "thanks" for m in seen))
        assert isinstance(next(m for m in seen if m.content == "thanks").channel, discord.Thread)


async def test_slash_command_defers_then_follows_up(fake):
    bot = make_bot(allowed_mentions=discord.AllowedMentions.none())
    seen: dict = {}

    @bot.tree.command(name="ask", description="Ask the docs")
    @app_commands.describe(question="What?", count="How many")
    async def ask(
        interaction: discord.Interaction, question: str, count: app_commands.Range[int, 1, 5] = 1
    ) -> None:
        seen["args"] = (question, count, interaction.user.id, interaction.channel_id)
        seen["manage_guild"] = interaction.permissions.manage_guild
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(f"answer to {question}")
        await interaction.followup.send("and more")

    async with running(fake, bot):
        guild = discord.Object(id=int(fake.guild_id))
        bot.tree.copy_global_to(guild=guild)
        synced = await bot.tree.sync(guild=guild)
        assert [c.name for c in synced] == ["ask"] and synced[0].id == int(fake.commands["ask"]["id"])
        assert fake.guild_commands["ask"]["options"][0]["name"] == "question"

        interaction = await fake.invoke_command(fake.alice, "ask", {"question": "why?", "count": 3})
        await fake.wait_for(lambda: len(interaction.followups) == 2)
        assert seen["args"] == ("why?", 3, int(fake.alice["id"]), int(fake.channel_id))
        assert seen["manage_guild"] is False
        assert interaction.payload["data"]["options"] == [
            {"name": "question", "type": 3, "value": "why?"},
            {"name": "count", "type": 4, "value": 3},
        ]
        assert [r["type"] for r in interaction.responses] == [5]
        first, second = interaction.followups
        # the first followup fills the deferred "thinking" message; later ones are new messages
        assert first is interaction.original and first["type"] == 20 and first["flags"] == 0
        assert first["content"] == "answer to why?" and first["payload"]["allowed_mentions"] == {"parse": []}
        assert second["id"] != first["id"] and second["content"] == "and more"
        assert all(m["channel_id"] == fake.channel_id for m in (first, second))

        boss = await fake.invoke_command(fake.boss, "ask", {"question": "admin?"})
        await fake.wait_for(lambda: len(boss.followups) == 2)
        assert seen["manage_guild"] is True
        for impossible in ({"nope": 1}, {"count": 2}, {"question": "q", "count": 6}):
            with pytest.raises(ValueError):  # Discord's client would not send these
                await fake.invoke_command(fake.alice, "ask", impossible)


async def test_subcommands_ephemeral_replies_and_late_callbacks():
    async with FakeDiscord(interaction_timeout=60) as fake, fake.patch_discord():
        bot = make_bot()
        errors: list[Exception] = []
        window_passed = asyncio.Event()  # set once the test has moved the slow interaction past its window
        kb = app_commands.Group(name="kb", description="Knowledge bases")

        @kb.command(name="bind", description="Bind a knowledge base")
        async def bind(interaction: discord.Interaction, name: str) -> None:
            await interaction.response.send_message(f"bound {name}", ephemeral=True)

        @kb.command(name="slow", description="Too slow")
        async def slow(interaction: discord.Interaction) -> None:
            await window_passed.wait()
            try:
                await interaction.response.send_message("late")
            except discord.NotFound as exc:
                errors.append(exc)

        bot.tree.add_command(kb)
        async with running(fake, bot):
            await bot.tree.sync()  # global this time
            assert fake.global_commands["kb"]["options"][0]["type"] == 1
            bound = await fake.invoke_command(fake.boss, "kb", {"name": "docs"}, subcommand="bind")
            await fake.wait_for(lambda: bound.responses)
            assert bound.payload["data"]["options"] == [
                {"name": "bind", "type": 1, "options": [{"name": "name", "type": 3, "value": "docs"}]}
            ]
            response = bound.responses[0]
            assert response["type"] == 4 and response["data"]["flags"] & 64
            assert bound.original["content"] == "bound docs" and bound.original in fake.messages

            late = await fake.invoke_command(fake.alice, "kb", subcommand="slow")
            late.created -= fake.interaction_timeout + 1  # as if the callback came a minute late
            window_passed.set()
            await fake.wait_for(lambda: errors, timeout=30)
            assert errors[0].code == 10062 and late.responses == []


async def test_a_button_click_reaches_the_view(fake):
    bot = make_bot()
    clicks: list[int] = []

    class Confirm(discord.ui.View):
        def __init__(self) -> None:
            super().__init__(timeout=None)

        @discord.ui.button(label="Yes", custom_id="confirm:yes", style=discord.ButtonStyle.success)
        async def yes(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
            clicks.append(interaction.user.id)
            await interaction.response.edit_message(content="confirmed", view=None)

    async with running(fake, bot):
        await bot.get_channel(int(fake.channel_id)).send("Sure?", view=Confirm())
        message = fake.messages[-1]
        assert message["components"][0]["components"][0]["custom_id"] == "confirm:yes"
        click = await fake.click_button(fake.alice, message, "confirm:yes")
        await fake.wait_for(lambda: click.responses)
        assert clicks == [int(fake.alice["id"])]
        assert click.responses[0]["type"] == 7
        assert message["content"] == "confirmed" and message["components"] == []
        assert fake.edits[-1]["message_id"] == message["id"]
        with pytest.raises(ValueError):
            await fake.click_button(fake.alice, message, "confirm:yes")  # the button is gone


async def test_a_429_is_waited_out(fake):
    bot = make_bot()
    async with running(fake, bot):
        channel = bot.get_channel(int(fake.channel_id))
        fake.rate_limit_next("POST", rf"/channels/{fake.channel_id}/messages", retry_after=0.3)
        started = time.monotonic()
        await channel.send("after the wait")
        assert time.monotonic() - started >= 0.3
        assert fake.messages[-1]["content"] == "after the wait" and len(fake.messages) == 1
        statuses = [
            r["status"] for r in fake.requests if r["path"] == f"/channels/{fake.channel_id}/messages"
        ]
        assert statuses == [429, 200]


async def test_a_dropped_gateway_is_resumed_and_missed_events_are_replayed(fake):
    bot = make_bot()

    async def identify_at_once(shard_id, *, initial: bool = False) -> None:
        pass  # discord.py waits 5 s before every IDENTIFY but the first

    bot.before_identify_hook = identify_at_once
    messages = collect(bot, "message")
    resumed = collect(bot, "resumed")
    ready = collect(bot, "ready")
    async with running(fake, bot):
        await fake.drop_gateway()
        await fake.send_user_message(fake.alice, "while you were away")  # buffered, replayed on RESUME
        await fake.wait_for(lambda: fake.resumes == 1 and resumed, timeout=5)
        await fake.send_user_message(fake.alice, "after the resume")
        await fake.wait_for(lambda: len(messages) == 2, timeout=5)
        assert [m.content for m in messages] == ["while you were away", "after the resume"]
        assert fake.identifies == 1
        assert fake.gateway_connections[-1]["path"] == "/resume-gateway"  # READY's resume_gateway_url

        # a session the gateway no longer knows: op 9, then a fresh IDENTIFY
        await fake.drop_gateway(resumable=False)
        await fake.wait_for(lambda: fake.identifies == 2 and len(ready) == 2, timeout=10)
        await fake.send_user_message(fake.alice, "new session")
        await fake.wait_for(lambda: messages[-1].content == "new session", timeout=5)


async def test_heartbeats_are_acknowledged():
    async with FakeDiscord(heartbeat_interval=50) as fake, fake.patch_discord():
        bot = make_bot()
        async with running(fake, bot):
            await fake.wait_for(lambda: fake.heartbeats >= 4, timeout=5)
            assert bot.latency < 1


async def test_the_message_content_intent_can_be_refused():
    async with FakeDiscord(allow_message_content=False) as fake, fake.patch_discord():
        error = await start_failing(fake, make_bot())
    assert isinstance(error, discord.PrivilegedIntentsRequired)


async def test_a_bad_token_fails_the_login(fake):
    error = await start_failing(fake, make_bot(), token="not-the-token")
    assert isinstance(error, discord.LoginFailure)
    assert fake.identifies == 0 and fake.gateway_connections == []


async def test_a_token_revoked_before_identify_closes_the_gateway_with_4004(fake):
    bot = make_bot()

    async def revoke() -> None:
        fake.token = "revoked"

    bot.setup_hook = revoke  # runs after the REST login, before the gateway connection
    error = await start_failing(fake, bot, token=fake.token)
    assert isinstance(error, discord.ConnectionClosed) and error.code == 4004


async def test_followup_edits_thread_from_a_followup_and_the_original_response(fake):
    bot = make_bot()

    @bot.tree.command(name="ask", description="Ask the docs")
    async def ask(interaction: discord.Interaction, question: str) -> None:
        await interaction.response.defer(thinking=True)
        message = await interaction.followup.send("thinking about it", wait=True)
        await message.edit(content=f"answer: {question}")
        thread = await interaction.channel.create_thread(
            name=question, message=message, auto_archive_duration=1440
        )
        await thread.send("more in the thread")

    @bot.tree.command(name="where", description="Where am I?")
    async def where(interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"in a {type(interaction.channel).__name__}")
        message = await interaction.original_response()
        await message.edit(content=message.content + "!")

    async with running(fake, bot):
        await bot.tree.sync()
        interaction = await fake.invoke_command(fake.alice, "ask", {"question": "venv?"})
        more = await fake.wait_for_message(lambda m: m["content"] == "more in the thread")
        answer = interaction.followups[0]
        assert answer["content"] == "answer: venv?" and more["channel_id"] == answer["id"]
        assert [e["message_id"] for e in fake.edits] == [answer["id"]]
        assert fake.threads[answer["id"]]["parent_id"] == fake.channel_id

        where = await fake.invoke_command(fake.boss, "where", channel_id=answer["id"])
        await fake.wait_for(lambda: where.original and where.original["content"].endswith("!"))
        assert where.responses[0]["data"]["content"] == "in a Thread"
        assert (
            where.original["channel_id"] == answer["id"]
            and fake.edits[-1]["message_id"] == where.original["id"]
        )
    assert fake.unhandled == []


async def test_a_new_bot_process_sees_old_threads_and_old_dynamic_buttons(fake):
    votes: list[int] = []

    class Vote(discord.ui.DynamicItem[discord.ui.Button], template=r"vote:(?P<id>\d+)"):
        def __init__(self, number: int) -> None:
            super().__init__(discord.ui.Button(label="Vote", custom_id=f"vote:{number}"))
            self.number = number

        @classmethod
        async def from_custom_id(cls, interaction, item, match, /):
            return cls(int(match["id"]))

        async def callback(self, interaction: discord.Interaction) -> None:
            votes.append(self.number)
            await interaction.response.send_message("thanks", ephemeral=True)

    first = make_bot()
    async with running(fake, first):
        view = discord.ui.View(timeout=None)
        view.add_item(Vote(7))
        sent = await first.get_channel(int(fake.channel_id)).send("vote?", view=view)
        await sent.create_thread(name="talk")
    second = make_bot()
    second.add_dynamic_items(Vote)
    async with running(fake, second):
        assert (fake.identifies, fake.resumes) == (2, 0)  # closing with 1000 ended the first session
        assert isinstance(second.get_channel(sent.id), discord.Thread)  # GUILD_CREATE lists active threads
        click = await fake.click_button(fake.alice, fake.messages[0], "vote:7")
        await fake.wait_for(lambda: click.responses)
        assert votes == [7] and click.original["flags"] & 64 and click.original["content"] == "thanks"


async def test_files_are_uploaded_and_served(fake):
    bot = make_bot()
    async with running(fake, bot):
        channel = bot.get_channel(int(fake.channel_id))
        message = await channel.send(
            "see attached", file=discord.File(io.BytesIO(b"hello"), filename="a.txt")
        )
        record = fake.messages[-1]
        assert record["attachments"][0]["filename"] == "a.txt" and record["attachments"][0]["size"] == 5
        assert fake.files[record["attachments"][0]["id"]] == b"hello"
        assert await message.attachments[0].read() == b"hello"
        with pytest.raises(discord.HTTPException) as empty:
            await channel.send("")
        assert empty.value.code == 50006
