"""Conversation memory against the real Redis."""

from __future__ import annotations

import multiprocessing

import pytest
import redis

from ragcord.errors import InvalidArgument
from ragcord.memory import (
    Conversation,
    ConversationMemory,
    TokenCounter,
    Turn,
    select_window,
    standalone_query,
)


def memory(client, prefix, **kw) -> ConversationMemory:
    return ConversationMemory(client, prefix=prefix, **kw)


def test_turns_round_trip_with_every_field(redis_client, key_prefix):
    mem = memory(redis_client, key_prefix)
    mem.append(
        "t1",
        Turn(role="user", text="How do I install it?", author="ana#1"),
        Turn(role="assistant", text="pip install quillstack [1]", cited_urls=("http://d/install",)),
    )
    turns = memory(redis_client, key_prefix).load("t1").turns  # a new object, as after a restart
    assert [(t.role, t.text, t.author, t.cited_urls) for t in turns] == [
        ("user", "How do I install it?", "ana#1", ()),
        ("assistant", "pip install quillstack [1]", "", ("http://d/install",)),
    ]
    assert all(t.at > 0 for t in turns)


def test_the_window_keeps_the_most_recent_turns_within_the_token_budget(redis_client, key_prefix):
    mem = memory(redis_client, key_prefix, token_budget=60)
    for i in range(10):
        mem.append("t", Turn(role="user", text=f"question {i} " + "word " * 20))
    window = mem.load("t").turns
    assert 1 <= len(window) < 10
    assert window[-1].text.startswith("question 9")
    assert len(redis_client.lrange(f"{key_prefix}:conv:t:turns", 0, -1)) == 10  # nothing lost without a model


class RecordingSummarizer:
    def __init__(self):
        self.calls = []

    def summarize(self, previous_summary, turns):
        self.calls.append((previous_summary, [t.text for t in turns]))
        return (previous_summary + " " + " | ".join(t.text.split()[0] for t in turns)).strip()


def test_older_turns_fold_into_a_running_summary(redis_client, key_prefix):
    summarizer = RecordingSummarizer()
    mem = memory(redis_client, key_prefix, token_budget=40, summarizer=summarizer)
    for i in range(6):
        mem.append("t", Turn(role="user", text=f"q{i} " + "word " * 10))
    first = mem.load("t")
    assert first.summary and summarizer.calls
    stored = redis_client.lrange(f"{key_prefix}:conv:t:turns", 0, -1)
    assert len(stored) == len(first.turns)  # folded turns left the list
    mem.append("t", Turn(role="user", text="q6 " + "word " * 10))
    second = mem.load("t")
    assert second.summary.startswith(first.summary)  # the summary runs on
    assert second.turns[-1].text.startswith("q6")


def test_a_turn_appended_while_folding_is_not_lost(redis_client, key_prefix):
    class AppendingSummarizer(RecordingSummarizer):
        def summarize(self, previous_summary, turns):
            mem.append("t", Turn(role="user", text="arrived during the fold"))
            return super().summarize(previous_summary, turns)

    mem = memory(redis_client, key_prefix, token_budget=30, summarizer=AppendingSummarizer())
    for i in range(5):
        mem.append("t", Turn(role="user", text=f"q{i} " + "word " * 10))
    mem.load("t")
    texts = [Turn.from_json(raw).text for raw in redis_client.lrange(f"{key_prefix}:conv:t:turns", 0, -1)]
    assert texts[-1] == "arrived during the fold"


def test_ttl_is_set_and_refreshed_on_each_turn(redis_client, key_prefix):
    mem = memory(redis_client, key_prefix, ttl_seconds=100)
    assert mem.ttl("t") == -2
    mem.append("t", Turn(role="user", text="hi"))
    assert 95 <= mem.ttl("t") <= 100
    redis_client.expire(f"{key_prefix}:conv:t:turns", 10)
    mem.append("t", Turn(role="assistant", text="hello"))
    assert 95 <= mem.ttl("t") <= 100


def test_conversations_are_isolated_and_can_be_cleared(redis_client, key_prefix):
    mem = memory(redis_client, key_prefix)
    mem.append("a", Turn(role="user", text="in a"))
    mem.append("b", Turn(role="user", text="in b"))
    assert [t.text for t in mem.load("a").turns] == ["in a"]
    assert mem.clear("a") and not mem.clear("a")
    assert mem.load("a").turns == [] and [t.text for t in mem.load("b").turns] == ["in b"]


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129])
def test_invalid_conversation_ids_are_refused(redis_client, key_prefix, bad):
    with pytest.raises(InvalidArgument, match="conversation_id"):
        memory(redis_client, key_prefix).append(bad, Turn(role="user", text="hi"))


def _append_many(url: str, prefix: str, name: str, count: int) -> None:
    mem = ConversationMemory(redis.Redis.from_url(url), prefix=prefix, max_turns=1000)
    for i in range(count):
        mem.append("shared", Turn(role="user", text=f"{name}-{i}"))


def test_two_processes_appending_at_once_lose_nothing(redis_url, redis_client, key_prefix):
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_append_many, args=(redis_url, key_prefix, name, 100)) for name in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    texts = [
        Turn.from_json(raw).text for raw in redis_client.lrange(f"{key_prefix}:conv:shared:turns", 0, -1)
    ]
    assert len(texts) == 200
    for name in "ab":
        assert [t for t in texts if t.startswith(name)] == [f"{name}-{i}" for i in range(100)]


# -- pure logic -----------------------------------------------------------------------------------------


def test_select_window_always_keeps_the_last_turn():
    turns = [Turn(role="user", text="word " * 500)]
    folded, window = select_window(turns, 10, TokenCounter())
    assert folded == [] and window == turns


def test_standalone_query_combines_only_follow_ups():
    conversation = Conversation(
        id="c",
        turns=[
            Turn(role="user", text="How do I create a virtual environment?"),
            Turn(role="assistant", text="..."),
        ],
    )
    assert standalone_query(conversation, "and how do I activate it?") == (
        "How do I create a virtual environment? and how do I activate it?"
    )
    self_contained = "Which Python versions does Quillstack support on Windows servers?"
    assert standalone_query(conversation, self_contained) == self_contained
    assert standalone_query(Conversation(id="c"), "and then?") == "and then?"
    long = Conversation(id="c", turns=[Turn(role="user", text="word " * 100)])
    assert len(standalone_query(long, "and that?").split()) == 60
