"""Bot state in the real Redis: bindings, owned threads, rate limits, feedback."""

from __future__ import annotations

import pytest

from ragcord.bindings import KnowledgeBaseBindings
from ragcord.errors import InvalidArgument, NotFound, PermissionDenied
from ragcord.feedback import FeedbackStore
from ragcord.ratelimit import RateLimiter
from ragcord.threads import OwnedThreads


def test_bindings_resolve_channel_then_server_then_default(redis_client, key_prefix):
    bindings = KnowledgeBaseBindings(redis_client, prefix=key_prefix, default="default")
    assert bindings.resolve(1, 10) == "default"
    bindings.bind(1, "docs")
    bindings.bind(1, "api-docs", channel_id=10)
    assert bindings.resolve(1, 10) == "api-docs"
    assert bindings.resolve(1, 99, 10) == "api-docs"  # a thread under channel 10
    assert bindings.resolve(1, 11) == "docs"
    assert bindings.resolve(2, 10) == "default"
    with pytest.raises(InvalidArgument):
        bindings.bind(1, "Bad Name")


def test_a_knowledge_base_a_server_crawled_is_out_of_every_other_servers_reach(redis_client, key_prefix):
    bindings = KnowledgeBaseBindings(redis_client, prefix=key_prefix, default="default")
    owners = bindings.owners
    assert bindings.usable(1) == bindings.usable(2) == "default"  # shared: no server owns it

    owners.claim("default", 1)  # server 1 ran /crawl into it
    owners.claim("default", 1)  # (again: still its own)
    assert bindings.usable(1) == "default"
    with pytest.raises(PermissionDenied, match="belongs to another Discord server"):
        bindings.usable(2)  # unbound, so it would have read server 1's documents
    with pytest.raises(PermissionDenied):
        owners.claim("default", 2)
    with pytest.raises(PermissionDenied):
        bindings.bind(2, "default")
    assert bindings.resolve(2) == "default"  # nothing was bound

    bindings.bind(2, "mine")
    owners.claim("mine", 2)
    assert bindings.usable(2) == "mine"
    assert owners.servers_of(["default", "mine", "other"]) == {
        "default": {"1"},
        "mine": {"2"},
        "other": set(),
    }

    owners.set_servers("default", [1, "4"])  # the operator lets the team's second server in
    assert bindings.usable(4) == "default"
    with pytest.raises(PermissionDenied):
        bindings.usable(3)  # unbound, not let in
    with pytest.raises(InvalidArgument):
        owners.set_servers("default", ["not-a-guild"])
    owners.set_servers("mine", [])  # shared again
    assert owners.servers("mine") == set() and bindings.bind(3, "mine") is None
    assert owners.release("default") and owners.servers("default") == set()
    assert bindings.usable(3) == "mine" and bindings.usable(5) == "default"  # deleted: free again


def test_owned_threads_survive_a_new_client(redis_client, key_prefix):
    OwnedThreads(redis_client, prefix=key_prefix).add(555, "555")
    assert OwnedThreads(redis_client, prefix=key_prefix).conversation_of(555) == "555"
    assert OwnedThreads(redis_client, prefix=key_prefix).conversation_of(556) is None


def test_rate_limit_allows_a_burst_then_says_how_long_to_wait(redis_client, key_prefix):
    limiter = RateLimiter(redis_client, prefix=key_prefix, limit=3, window_seconds=60)
    assert [limiter.hit("u1") for _ in range(3)] == [None, None, None]
    wait = limiter.hit("u1")
    assert wait is not None and 0 < wait <= 60
    assert limiter.hit("u2") is None


def test_feedback_is_one_vote_per_person_with_counts_per_source(redis_client, key_prefix):
    store = FeedbackStore(redis_client, prefix=key_prefix)
    store.record_answer(
        "a1" * 8,
        question="q?",
        answer="a [1]",
        cited_urls=["http://d/x", "http://d/y"],
        knowledge_base="docs",
        guild_id="1",
    )
    store.vote("a1" * 8, "alice", "up")
    store.vote("a1" * 8, "alice", "up")  # again: no change
    store.vote("a1" * 8, "bob", "down")
    store.vote("a1" * 8, "bob", "up")  # changed their mind
    record = store.get("a1" * 8)
    assert (record.up, record.down) == (2, 0)
    assert [(s.url, s.up, s.down) for s in store.per_source("docs")] == [
        ("http://d/x", 2, 0),
        ("http://d/y", 2, 0),
    ]
    assert [r.answer_id for r in store.list(knowledge_base="docs")] == ["a1" * 8]
    assert store.list(knowledge_base="other") == []
    with pytest.raises(NotFound):
        store.vote("ffffffffffffffff", "alice", "up")
    with pytest.raises(InvalidArgument):
        store.vote("a1" * 8, "alice", "sideways")
