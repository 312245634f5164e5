"""Support communities through the real discord.py client against the loopback Discord fake: forum posts
answered, non-questions ignored, the handoff to the support role, Solved."""

from __future__ import annotations

import re
import time
import uuid

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from rpc.v1 import admin_pb2 as pb
from tests.discord_fake import MANAGE_THREADS, FakeDiscord
from tests.harness import admin_api
from tests.integration.test_bot import FOLLOW_UP, VENV_Q, bot_messages, running_bot, say_in

UNKNOWN_Q = "How do I bake sourdough bread with rye flour and a cast iron pot?"


@pytest.fixture
async def world(indexed):
    async with running_bot(indexed) as world:
        yield world


async def command(fake: FakeDiscord, user: dict, sub: str, options: dict, **kw) -> dict:
    """/kb <sub> ...; returns the (first) response's data."""
    interaction = await fake.invoke_command(user, "kb", options, subcommand=sub, **kw)
    await fake.wait_for(lambda: interaction.responses, timeout=30)
    return interaction.responses[0]["data"]


async def forum_with_autoanswer(world, mode: str = "answer", *, role: bool = True) -> tuple[str, str | None]:
    fake = world.fake
    forum_id = fake.add_forum("help", tags=["Solved", "Bug"])
    await fake.wait_for(lambda: world.bot.get_channel(int(forum_id)) is not None)
    reply = await command(fake, fake.boss, "autoanswer", {"channel": forum_id, "mode": mode})
    assert "help" in reply["content"] or "<#" in reply["content"]
    role_id = None
    if role:
        role_id = fake.add_role("helpers")
        await fake.wait_for(lambda: world.bot.guilds[0].get_role(int(role_id)) is not None)
        await command(fake, fake.boss, "support", {"role": role_id})
    return forum_id, role_id


def custom_ids(message: dict) -> list[str]:
    return [c["custom_id"] for row in message["components"] for c in row["components"]]


async def test_a_new_forum_post_is_answered_in_the_post_and_follow_ups_remember_it(world):
    fake = world.fake
    forum_id, _ = await forum_with_autoanswer(world)

    thread, _ = await fake.create_forum_post(fake.alice, forum_id, "Separate environments", VENV_Q)
    await fake.wait_for(lambda: bot_messages(fake, thread["id"]), timeout=30)
    answer = bot_messages(fake, thread["id"])[0]
    assert "/docs/virtualenv.html" in answer["content"] and "**Sources**" in answer["content"]
    ids = custom_ids(answer)
    assert ids[0].startswith("ragcord:fb:up:") and f"ragcord:support:solved:{thread['id']}" in ids
    assert answer["payload"]["allowed_mentions"] == {"parse": []}

    follow = await say_in(fake, fake.alice, thread["id"], FOLLOW_UP)
    assert "/docs/virtualenv.html" in follow["content"]
    turns = world.services.ask.memory.load(thread["id"]).turns
    assert [t.role for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[0].text.startswith("Separate environments\n")  # the title is part of the question


async def test_non_questions_staff_posts_and_other_forums_get_nothing(world):
    fake = world.fake
    forum_id, role_id = await forum_with_autoanswer(world)
    other_forum = fake.add_forum("showcase")
    staff = fake.add_member("helper", roles=[role_id])

    await fake.create_forum_post(fake.alice, forum_id, "Thanks!", "thanks so much, it works now")
    await fake.create_forum_post(fake.alice, forum_id, "Release 2.0 is out", "New: dark mode and a CLI.")
    await fake.create_forum_post(staff, forum_id, "Known issue", f"{VENV_Q}")
    await fake.create_forum_post(fake.alice, other_forum, "Question", VENV_Q)
    # a question afterwards is answered: the ones before were seen and skipped, not still in flight
    thread, _ = await fake.create_forum_post(fake.alice, forum_id, "venv", VENV_Q)
    await fake.wait_for(lambda: bot_messages(fake, thread["id"]), timeout=30)
    assert [m["channel_id"] for m in fake.messages if not m["flags"] & 64] == [thread["id"]]


async def test_not_found_mentions_only_the_support_role_and_only_once(world):
    fake = world.fake
    forum_id, role_id = await forum_with_autoanswer(world)
    thread, _ = await fake.create_forum_post(fake.alice, forum_id, "Bread", f"{UNKNOWN_Q} @everyone")
    await fake.wait_for(lambda: bot_messages(fake, thread["id"]), timeout=30)
    handoff = bot_messages(fake, thread["id"])[0]
    assert "couldn't find" in handoff["content"] and f"<@&{role_id}>" in handoff["content"]
    assert handoff["mention_roles"] == [role_id] and handoff["mentions"] == []
    assert not handoff["mention_everyone"]
    assert handoff["payload"]["allowed_mentions"] == {"parse": [], "roles": [int(role_id)]}

    # a follow-up, then Still need help on an answer: no second mention in this thread
    answered, _ = await fake.create_forum_post(fake.alice, forum_id, "venv", VENV_Q)
    answer = await fake.wait_for_message(lambda m: m["channel_id"] == answered["id"])
    clicks = []
    for _ in range(2):
        clicks.append(await fake.click_button(fake.alice, answer, f"ragcord:support:help:{answered['id']}"))
        await fake.wait_for(lambda: clicks[-1].followups, timeout=30)
    public = [m for m in bot_messages(fake, answered["id"]) if not m["flags"] & 64]  # (not the ephemeral)
    assert [m["mention_roles"] for m in public] == [[], [role_id]]
    assert "asked the support team" in clicks[0].followups[0]["content"]
    assert "already" in clicks[1].followups[0]["content"]
    mentioning = [m for m in fake.messages if m["mention_roles"] or m["mentions"] or m["mention_everyone"]]
    assert [m["channel_id"] for m in mentioning] == [thread["id"], answered["id"]]
    assert world.services.support.handed_off(thread["id"])


async def test_solved_applies_the_forums_tag_and_records_the_resolution(world):
    fake = world.fake
    forum_id, _ = await forum_with_autoanswer(world)
    fake.grant_bot(MANAGE_THREADS)
    thread, _ = await fake.create_forum_post(fake.alice, forum_id, "venv", VENV_Q)
    answer = await fake.wait_for_message(lambda m: m["channel_id"] == thread["id"], timeout=30)
    solved = f"ragcord:support:solved:{thread['id']}"
    stranger = fake.add_member("stranger")

    refused = await fake.click_button(stranger, answer, solved)
    await fake.wait_for(lambda: refused.responses)
    assert "Only the person who asked" in refused.responses[0]["data"]["content"]
    assert fake.threads[thread["id"]]["applied_tags"] == []

    await world.restart()  # the buttons are persistent
    click = await fake.click_button(fake.alice, answer, solved)
    await fake.wait_for(lambda: click.followups, timeout=30)
    assert fake.threads[thread["id"]]["applied_tags"] == [fake.tag_id(forum_id, "Solved")]
    record = world.services.support.solved(thread["id"])
    assert record["by"] == "asker" and "/docs/virtualenv.html" in record["answer"]

    # a moderator applying the tag in Discord's client solves a thread too
    other, _ = await fake.create_forum_post(fake.alice, forum_id, "Bread", UNKNOWN_Q)
    await fake.wait_for(lambda: bot_messages(fake, other["id"]), timeout=30)
    await fake.set_thread_tags(fake.boss, other["id"], [fake.tag_id(forum_id, "Solved")])
    await fake.wait_for(lambda: world.services.support.solved(other["id"]), timeout=10)
    assert world.services.support.solved(other["id"])["by"] == "staff"


HOT_Q = "How do I turn on hot reload in the Quillstack dev server?"
HOT_A = "Start the dev server with `quillstack serve --frobnicate`: it reloads the app on every save."


async def own_knowledge_base(world) -> str:
    """A fresh knowledge base that this server owns (learning writes only into the server's own)."""
    kb = f"learn{uuid.uuid4().hex[:8]}"
    services, guild = world.services, world.fake.guild_id
    services.bindings.owners.claim(kb, guild)
    services.bindings.bind(guild, kb)
    return kb


async def test_a_solved_thread_is_learned_cited_elsewhere_updated_and_removed(world):
    fake, services = world.fake, world.services
    kb = await own_knowledge_base(world)
    forum_id, role_id = await forum_with_autoanswer(world)
    await command(fake, fake.boss, "learn", {"channel": forum_id, "enabled": True})
    fake.grant_bot(MANAGE_THREADS)
    staff = fake.add_member("helper", roles=[role_id])

    # the docs do not know: the bot hands off, a member of the support team answers, the asker marks it solved
    thread, _ = await fake.create_forum_post(
        fake.alice, forum_id, "Hot reload", f"{HOT_Q} Thanks <@{fake.boss['id']}>"
    )
    handoff = await fake.wait_for_message(lambda m: m["channel_id"] == thread["id"], timeout=30)
    reply = await fake.send_user_message(staff, HOT_A, channel_id=thread["id"])
    click = await fake.click_button(fake.alice, handoff, f"ragcord:support:solved:{thread['id']}")
    await fake.wait_for(lambda: click.followups, timeout=30)
    assert "part of the knowledge base" in click.followups[0]["content"]
    assert fake.threads[thread["id"]]["applied_tags"] == [fake.tag_id(forum_id, "Solved")]

    url = f"https://discord.com/channels/{fake.guild_id}/{thread['id']}"
    source = services.store.get_source(kb, url)
    assert "--frobnicate" in source.text and "Answer (staff):" in source.text
    assert (
        "a member" in source.text
        and fake.boss["id"] not in source.text
        and "helper" not in source.text.lower()
    )

    # another post asks the same: the answer cites the solved thread
    other, _ = await fake.create_forum_post(
        fake.alice, forum_id, "Reloading", "hot reload in the Quillstack dev server: how do I turn it on?"
    )
    answer = await fake.wait_for_message(lambda m: m["channel_id"] == other["id"], timeout=30)
    assert url in answer["content"] and "--frobnicate" in answer["content"]

    # the answer is edited: the source follows; the thread is deleted: the source is gone
    await fake.edit_user_message(staff, reply, HOT_A.replace("--frobnicate", "--reload"))
    await fake.wait_for(lambda: "--reload" in services.store.get_source(kb, url).text, timeout=10)
    await fake.rename_thread(fake.boss, thread["id"], "Hot reloading")  # a moderator renames the post
    await fake.wait_for(lambda: services.store.list_sources(kb)[0].title == "Hot reloading", timeout=10)
    await fake.delete_thread(fake.boss, thread["id"])
    await fake.wait_for(lambda: all(s.url != url for s in services.store.list_sources(kb)), timeout=10)


async def test_turning_learning_off_removes_what_was_learned_and_shared_bases_are_never_written(world):
    fake, services = world.fake, world.services
    kb = await own_knowledge_base(world)
    forum_id, _ = await forum_with_autoanswer(world)
    await command(fake, fake.boss, "learn", {"channel": forum_id, "enabled": True})
    thread, _ = await fake.create_forum_post(fake.alice, forum_id, "Hot reload", HOT_Q)
    await fake.wait_for(lambda: bot_messages(fake, thread["id"]), timeout=30)
    await fake.send_user_message(fake.boss, HOT_A, channel_id=thread["id"])
    await fake.set_thread_tags(fake.boss, thread["id"], [fake.tag_id(forum_id, "Solved")])  # a moderator
    url = f"https://discord.com/channels/{fake.guild_id}/{thread['id']}"
    await fake.wait_for(lambda: any(s.url == url for s in services.store.list_sources(kb)), timeout=30)

    reply = await command(fake, fake.boss, "learn", {"channel": forum_id, "enabled": False})
    assert "removed 1" in reply["content"]
    assert all(s.url != url for s in services.store.list_sources(kb))

    # bound to a shared knowledge base (nobody owns "docs"), nothing is learned
    services.bindings.bind(fake.guild_id, "docs")
    told = await command(fake, fake.boss, "learn", {"channel": forum_id, "enabled": True})
    assert "`docs` is shared with other servers, so I won't learn into it" in told["content"]
    shared, _ = await fake.create_forum_post(fake.alice, forum_id, "Hot reload again", HOT_Q)
    await fake.wait_for(lambda: bot_messages(fake, shared["id"]), timeout=30)
    await fake.send_user_message(fake.boss, HOT_A, channel_id=shared["id"])
    await fake.set_thread_tags(fake.boss, shared["id"], [fake.tag_id(forum_id, "Solved")])
    await fake.wait_for(lambda: services.support.solved(shared["id"]), timeout=10)
    assert services.learning.get(shared["id"]) is None


BREAD = [
    "How do I bake sourdough bread with rye flour?",
    "What's the recipe for rye sourdough bread?",
    "how to bake a rye sourdough loaf",
]


async def test_the_report_shows_a_cluster_of_three_similar_unanswered_questions(world, indexed):
    fake, services = world.fake, world.services
    kb = await own_knowledge_base(world)  # empty: nothing is found
    forum_id, _ = await forum_with_autoanswer(world)
    since = time.time() - 1
    for question in [*BREAD[:2], "Can Quillstack export reports to PDF?", BREAD[2]]:
        thread, _ = await fake.create_forum_post(fake.alice, forum_id, "Question", question)
        await fake.wait_for(lambda t=thread: bot_messages(fake, t["id"]), timeout=30)
    answered, _ = await fake.create_forum_post(fake.alice, forum_id, "Also", "How do I deploy on Kubernetes?")
    await fake.wait_for(lambda: bot_messages(fake, answered["id"]), timeout=30)

    settings = services.settings
    async with admin_api(settings, indexed) as (stub, _):
        since_pb = Timestamp()
        since_pb.FromSeconds(int(since))
        unanswered = await stub.ListUnanswered(pb.ListUnansweredRequest(knowledge_base=kb, since=since_pb))
        stats = await stub.GetQuestionStats(pb.GetQuestionStatsRequest(knowledge_base=kb))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListUnanswered(pb.ListUnansweredRequest(knowledge_base="Bad Name!"))
        with pytest.raises(grpc.aio.AioRpcError) as bad_since:
            await stub.GetQuestionStats(pb.GetQuestionStatsRequest(since=Timestamp(seconds=10**12)))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_since.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "since is not a valid time" in bad_since.value.details()

    counts = sorted(c.count for c in unanswered.clusters)
    assert counts == [1, 1, 3] and unanswered.questions == 5
    bread = next(c for c in unanswered.clusters if c.count == 3)
    assert list(bread.examples) == [f"Question {q}" for q in (BREAD[2], BREAD[1], BREAD[0])]  # newest first
    assert unanswered.clusters[0].latest_at.ToSeconds() >= unanswered.clusters[-1].latest_at.ToSeconds()
    assert stats.total.questions == 5 and stats.total.answered == 0 and stats.total.handed_off == 5
    assert [d.questions for d in stats.days] == [5]
    # who asked is kept only as a salted hash
    record = services.questions.questions(kb)[0]
    assert record.user != fake.alice["id"] and len(record.user) == 16


async def test_settings_report_and_knowledge_base_autocomplete(world):
    fake, services = world.fake, world.services
    forum_id, role_id = await forum_with_autoanswer(world, "suggest")
    await command(fake, fake.boss, "learn", {"channel": forum_id, "enabled": True})
    mine = f"mine{uuid.uuid4().hex[:6]}"
    services.bindings.owners.claim(mine, fake.guild_id)
    theirs = f"theirs{uuid.uuid4().hex[:6]}"
    services.bindings.owners.claim(theirs, "42")
    for kb in (mine, theirs):
        services.store.replace_page(kb, "https://x.example/", [])  # (the names exist in the store)

    shown = await command(fake, fake.boss, "settings", {})
    assert f"<#{forum_id}> (suggest)" in shown["content"] and f"<@&{role_id}>" in shown["content"]
    assert "Learning from solved threads**: <#" in shown["content"]
    assert "**Re-crawled**: never on its own" in shown["content"]  # /kb schedule and /kb updates show too
    assert "**Updates posted in**: nowhere" in shown["content"]
    assert shown["flags"] & 64  # ephemeral

    typing = await fake.autocomplete(fake.boss, "kb", {"name": "mi"}, focused="name", subcommand="bind")
    await fake.wait_for(lambda: typing.responses, timeout=10)
    offered = [c["value"] for c in typing.responses[0]["data"]["choices"]]
    assert mine in offered and theirs not in offered

    thread, _ = await fake.create_forum_post(fake.alice, forum_id, "venv", VENV_Q)
    suggestion = await fake.wait_for_message(lambda m: m["channel_id"] == thread["id"], timeout=30)
    assert (
        suggestion["content"].startswith("These pages may help:")
        and "/docs/virtualenv.html" in suggestion["content"]
    )
    interaction = await fake.invoke_command(fake.boss, "kb", {}, subcommand="report")
    await fake.wait_for(lambda: interaction.followups, timeout=30)
    assert re.search(
        r"\d+ questions, \d+% answered", interaction.followups[0]["content"]
    )  # ("docs" is shared)


async def test_a_text_channel_with_autoanswer_answers_questions_in_a_thread(world):
    fake = world.fake
    await command(fake, fake.boss, "autoanswer", {"channel": fake.channel_id, "mode": "answer"})
    await fake.send_user_message(fake.alice, "good morning everyone")
    question = await fake.send_user_message(fake.alice, VENV_Q)
    await fake.wait_for(lambda: question["id"] in fake.threads, timeout=30)
    await fake.wait_for(lambda: bot_messages(fake, question["id"]), timeout=30)
    assert "/docs/virtualenv.html" in bot_messages(fake, question["id"])[0]["content"]
    assert [m for m in bot_messages(fake, fake.channel_id) if not m["flags"] & 64] == []
    assert len(fake.threads) == 1  # the greeting got nothing

    follow = await say_in(fake, fake.alice, question["id"], FOLLOW_UP)
    assert "/docs/virtualenv.html" in follow["content"]
    await fake.send_user_message(fake.boss, "Also see the FAQ.", channel_id=question["id"])  # not the asker
    off = await command(fake, fake.boss, "autoanswer", {"channel": fake.channel_id, "mode": "off"})
    assert "won't answer" in off["content"]
    assert len([m for m in bot_messages(fake, question["id"]) if not m["flags"] & 64]) == 2
