"""The Discord fake's forums, tags, edits, deletes and role mentions against the real discord.py client."""

from __future__ import annotations

import asyncio

import discord
import pytest

from tests.discord_fake import MANAGE_THREADS, FakeDiscord
from tests.unit.test_discord_fake import collect, make_bot, running


@pytest.fixture
async def fake():
    async with FakeDiscord() as fake:
        with fake.patch_discord():
            yield fake


async def test_a_forum_post_arrives_as_a_new_thread_then_its_starter_message(fake):
    forum_id = fake.add_forum("help", tags=["Solved", "Bug"])
    bot = make_bot()
    order: list[str] = []

    async def on_thread_create(thread: discord.Thread) -> None:
        order.append(f"thread:{thread.id}")

    async def on_message(message: discord.Message) -> None:
        order.append(f"message:{message.id}")

    bot.add_listener(on_thread_create)
    bot.add_listener(on_message)

    async with running(fake, bot):
        forum = bot.get_channel(int(forum_id))
        assert isinstance(forum, discord.ForumChannel)
        assert [t.name for t in forum.available_tags] == ["Solved", "Bug"]

        thread, starter = await fake.create_forum_post(
            fake.alice, forum_id, "Install fails", "How do I fix it?"
        )
        await fake.wait_for(lambda: len(order) == 2)
        assert order == [f"thread:{thread['id']}", f"message:{thread['id']}"]
        assert starter["id"] == thread["id"]
        cached = bot.get_channel(int(thread["id"]))
        assert isinstance(cached, discord.Thread) and cached.parent_id == int(forum_id)
        assert cached.owner_id == int(fake.alice["id"]) and cached.name == "Install fails"


async def test_tags_need_the_forums_tags_and_manage_threads_for_the_bot(fake):
    forum_id = fake.add_forum("help", tags=["Solved"])
    bot = make_bot()
    async with running(fake, bot):
        thread, _ = await fake.create_forum_post(fake.alice, forum_id, "A post", "Why?")
        await fake.wait_for(lambda: bot.get_channel(int(thread["id"])) is not None)
        cached = bot.get_channel(int(thread["id"]))
        solved = cached.parent.get_tag(int(fake.tag_id(forum_id, "Solved")))

        with pytest.raises(discord.Forbidden):  # the bot does not own the post and lacks Manage Threads
            await cached.add_tags(solved)
        fake.grant_bot(MANAGE_THREADS)
        await fake.wait_for(lambda: cached.guild.me.guild_permissions.manage_threads)
        await cached.add_tags(solved)
        assert fake.threads[thread["id"]]["applied_tags"] == [str(solved.id)]

        updates = collect(bot, "thread_update")
        await fake.set_thread_tags(fake.boss, thread["id"], [])
        await fake.wait_for(lambda: updates)
        assert cached.applied_tags == []
        with pytest.raises(ValueError, match="tag change refused"):
            await fake.set_thread_tags(fake.boss, thread["id"], ["123"])


async def test_user_edits_deletes_and_thread_deletes_reach_the_client(fake):
    forum_id = fake.add_forum("help")
    bot = make_bot()
    edits, deletes = collect(bot, "raw_message_edit"), collect(bot, "raw_message_delete")
    thread_deletes = collect(bot, "raw_thread_delete")
    async with running(fake, bot):
        thread, starter = await fake.create_forum_post(fake.alice, forum_id, "A post", "Why?")
        reply = await fake.send_user_message(fake.boss, "Because.", channel_id=thread["id"])
        await fake.edit_user_message(fake.boss, reply, "Because of X.")
        await fake.wait_for(lambda: edits)
        assert edits[0].message_id == int(reply["id"]) and edits[0].data["content"] == "Because of X."
        with pytest.raises(ValueError):
            await fake.edit_user_message(fake.alice, reply, "not mine")
        await fake.delete_user_message(fake.boss, reply)
        await fake.wait_for(lambda: deletes)
        assert deletes[0].message_id == int(reply["id"])

        await fake.delete_thread(fake.boss, thread["id"])
        await fake.wait_for(lambda: thread_deletes)
        assert thread_deletes[0].thread_id == int(thread["id"]) and thread["id"] not in fake.threads


async def test_a_role_is_mentioned_only_when_allowed_mentions_lists_it(fake):
    role_id = fake.add_role("helpers")
    other_id = fake.add_role("others")
    bot = make_bot(allowed_mentions=discord.AllowedMentions.none())
    async with running(fake, bot):
        await fake.wait_for(lambda: bot.guilds and bot.guilds[0].get_role(int(role_id)) is not None)
        channel = bot.get_channel(int(fake.channel_id))
        await channel.send(f"<@&{role_id}> <@&{other_id}> <@{fake.alice['id']}> @everyone")
        await channel.send(
            f"<@&{role_id}> <@&{other_id}> <@{fake.alice['id']}> @everyone",
            allowed_mentions=discord.AllowedMentions(
                everyone=False, users=False, replied_user=False, roles=[discord.Object(int(role_id))]
            ),
        )
        quiet, loud = fake.messages[-2:]
        assert quiet["mention_roles"] == [] and loud["mention_roles"] == [role_id]
        assert loud["mentions"] == [] and not loud["mention_everyone"]
    await asyncio.sleep(0)
