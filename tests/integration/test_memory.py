"""Conversation memory against the real Redis."""

from __future__ import annotations

import multiprocessing

import pytest
import redis

from ragcord.errors import InvalidArgument
from ragcord.memory import ConversationMemory, Turn


class WordCounter:
    """One token per word, so budgets in these tests are easy to reason about."""

    def count(self, text: str) -> int:
        return len(text.split())


class RecordingSummarizer:
    """Summarizes by listing the first word of each folded turn after the previous summary."""

    def __init__(self):
        self.calls: list[tuple[str, list[str]]] = []

    def summarize(self, previous_summary, turns):
        self.calls.append((previous_summary, [t.text for t in turns]))
        return " ".join([previous_summary, *(t.text.split()[0] for t in turns)]).strip()


def make_memory(client, prefix, **kwargs) -> ConversationMemory:
    kwargs.setdefault("counter", WordCounter())
    return ConversationMemory(client, prefix=prefix, **kwargs)


def stored_texts(client, prefix, conversation_id) -> list[str]:
    return [
        Turn.from_json(raw).text for raw in client.lrange(f"{prefix}:conv:{conversation_id}:turns", 0, -1)
    ]


def five_word_turns(memory, conversation_id, count, start=0):
    for i in range(start, start + count):
        memory.append(conversation_id, Turn(role="user", text=f"q{i} two three four five"))


def test_turns_round_trip_with_every_field(redis_client, key_prefix):
    memory = make_memory(redis_client, key_prefix)
    question = Turn(role="user", text="How do I install it? ✓", author="ana#1", at=1700000000.5)
    answer = Turn(
        role="assistant", text="pip install quillstack [1]", cited_urls=("http://d/a", "http://d/b")
    )
    memory.append("thread-1", question, answer)

    conversation = memory.load("thread-1")

    assert conversation.id == "thread-1" and conversation.summary == ""
    assert conversation.turns[0] == question
    loaded_answer = conversation.turns[1]
    assert (loaded_answer.role, loaded_answer.text, loaded_answer.author, loaded_answer.cited_urls) == (
        "assistant",
        "pip install quillstack [1]",
        "",
        ("http://d/a", "http://d/b"),
    )
    assert loaded_answer.at > 1700000000.5  # filled in by append


def test_an_unknown_conversation_loads_empty(redis_client, key_prefix):
    conversation = make_memory(redis_client, key_prefix).load("never-used")
    assert (conversation.summary, conversation.turns) == ("", [])


def test_the_window_is_the_most_recent_turns_within_the_token_budget(redis_client, key_prefix):
    memory = make_memory(redis_client, key_prefix, token_budget=12)
    five_word_turns(memory, "t", 10)

    window = memory.load("t").turns

    assert [t.text.split()[0] for t in window] == ["q8", "q9"]
    assert len(stored_texts(redis_client, key_prefix, "t")) == 10  # without a summarizer nothing is deleted


def test_without_a_counter_the_budget_is_measured_with_the_word_estimate(redis_client, key_prefix):
    memory = ConversationMemory(redis_client, prefix=key_prefix, token_budget=14)
    five_word_turns(memory, "t", 4)  # 5 words: an estimated 7 tokens each

    assert [t.text.split()[0] for t in memory.load("t").turns] == ["q2", "q3"]


def test_a_last_turn_over_the_budget_is_still_returned(redis_client, key_prefix):
    memory = make_memory(redis_client, key_prefix, token_budget=5)
    memory.append("t", Turn(role="user", text="short"), Turn(role="assistant", text="word " * 50))
    assert [t.text for t in memory.load("t").turns] == ["word " * 50]


def test_older_turns_fold_into_a_running_summary(redis_client, key_prefix):
    summarizer = RecordingSummarizer()
    memory = make_memory(redis_client, key_prefix, token_budget=12, summarizer=summarizer)
    five_word_turns(memory, "t", 6)

    first = memory.load("t")

    assert first.summary == "q0 q1 q2 q3"
    assert [t.text.split()[0] for t in first.turns] == ["q4", "q5"]
    assert [t.split()[0] for t in stored_texts(redis_client, key_prefix, "t")] == ["q4", "q5"]
    assert redis_client.get(f"{key_prefix}:conv:t:summary") == b"q0 q1 q2 q3"

    five_word_turns(memory, "t", 1, start=6)
    second = memory.load("t")

    assert summarizer.calls[-1] == ("q0 q1 q2 q3", ["q4 two three four five"])
    assert second.summary == "q0 q1 q2 q3 q4"
    assert [t.text.split()[0] for t in second.turns] == ["q5", "q6"]


def test_nothing_is_summarized_while_everything_fits(redis_client, key_prefix):
    summarizer = RecordingSummarizer()
    memory = make_memory(redis_client, key_prefix, token_budget=100, summarizer=summarizer)
    five_word_turns(memory, "t", 3)
    assert len(memory.load("t").turns) == 3 and summarizer.calls == []


def test_a_turn_appended_while_folding_is_kept(redis_client, key_prefix):
    class AppendingSummarizer(RecordingSummarizer):
        def summarize(self, previous_summary, turns):
            other.append("t", Turn(role="user", text="arrived during the fold"))
            return super().summarize(previous_summary, turns)

    other = make_memory(redis.Redis(connection_pool=redis_client.connection_pool), key_prefix)
    memory = make_memory(redis_client, key_prefix, token_budget=12, summarizer=AppendingSummarizer())
    five_word_turns(memory, "t", 5)

    conversation = memory.load("t")

    assert conversation.summary == "q0 q1 q2"
    assert stored_texts(redis_client, key_prefix, "t") == [
        "q3 two three four five",
        "q4 two three four five",
        "arrived during the fold",
    ]


def test_a_fold_that_lost_a_race_changes_nothing(redis_client, key_prefix):
    class RacingSummarizer(RecordingSummarizer):
        def summarize(self, previous_summary, turns):
            rival.load("t")  # another process folds the same turns first
            return "this summary must not be stored"

    rival = make_memory(redis_client, key_prefix, token_budget=12, summarizer=RecordingSummarizer())
    memory = make_memory(redis_client, key_prefix, token_budget=12, summarizer=RacingSummarizer())
    five_word_turns(memory, "t", 5)

    conversation = memory.load("t")

    assert conversation.summary == "q0 q1 q2"  # the rival's, each turn summarized once
    assert [t.split()[0] for t in stored_texts(redis_client, key_prefix, "t")] == ["q3", "q4"]
    assert [t.text.split()[0] for t in conversation.turns] == ["q3", "q4"]


def test_a_conversation_cleared_while_folding_stays_cleared(redis_client, key_prefix):
    class ClearingSummarizer(RecordingSummarizer):
        def summarize(self, previous_summary, turns):
            memory.clear("t")
            return "stale"

    memory = make_memory(redis_client, key_prefix, token_budget=12, summarizer=ClearingSummarizer())
    five_word_turns(memory, "t", 5)
    memory.load("t")
    assert redis_client.keys(f"{key_prefix}:conv:t:*") == []


def test_a_failing_summarizer_keeps_the_turns_for_later(redis_client, key_prefix):
    class BrokenSummarizer:
        def summarize(self, previous_summary, turns):
            raise RuntimeError("the model is down")

    memory = make_memory(redis_client, key_prefix, token_budget=12, summarizer=BrokenSummarizer())
    five_word_turns(memory, "t", 5)

    conversation = memory.load("t")

    assert conversation.summary == "" and len(conversation.turns) == 2
    assert len(stored_texts(redis_client, key_prefix, "t")) == 5


def test_a_malformed_stored_turn_is_skipped_and_folded_away(redis_client, key_prefix):
    memory = make_memory(redis_client, key_prefix, token_budget=12, summarizer=RecordingSummarizer())
    redis_client.rpush(f"{key_prefix}:conv:t:turns", b"{not json")
    five_word_turns(memory, "t", 3)

    conversation = memory.load("t")

    assert conversation.summary == "q0"
    assert [t.split()[0] for t in stored_texts(redis_client, key_prefix, "t")] == ["q1", "q2"]


def test_max_turns_drops_the_oldest_without_a_summarizer(redis_client, key_prefix):
    memory = make_memory(redis_client, key_prefix, max_turns=5)
    five_word_turns(memory, "t", 8)
    assert [t.split()[0] for t in stored_texts(redis_client, key_prefix, "t")] == [
        "q3",
        "q4",
        "q5",
        "q6",
        "q7",
    ]


def test_with_a_summarizer_max_turns_leaves_turns_for_folding(redis_client, key_prefix):
    summarizer = RecordingSummarizer()
    memory = make_memory(redis_client, key_prefix, max_turns=5, token_budget=10, summarizer=summarizer)
    five_word_turns(memory, "t", 8)
    assert len(stored_texts(redis_client, key_prefix, "t")) == 8
    assert memory.load("t").summary == "q0 q1 q2 q3 q4 q5"


def test_the_ttl_is_set_and_refreshed_on_each_append_for_both_keys(redis_client, key_prefix):
    memory = make_memory(
        redis_client, key_prefix, ttl_seconds=100, token_budget=5, summarizer=RecordingSummarizer()
    )
    turns_key, summary_key = f"{key_prefix}:conv:t:turns", f"{key_prefix}:conv:t:summary"
    assert memory.ttl("t") == -2

    five_word_turns(memory, "t", 2)
    assert 95 <= memory.ttl("t") <= 100
    memory.load("t")  # folds q0 into the summary
    assert 95 <= redis_client.ttl(summary_key) <= 100

    redis_client.expire(turns_key, 10)
    redis_client.expire(summary_key, 10)
    memory.load("t")
    assert memory.ttl("t") <= 10  # loading does not extend a conversation's life

    five_word_turns(memory, "t", 1, start=2)
    assert 95 <= memory.ttl("t") <= 100
    assert 95 <= redis_client.ttl(summary_key) <= 100


def test_conversations_are_isolated(redis_client, key_prefix):
    memory = make_memory(redis_client, key_prefix)
    memory.append("a", Turn(role="user", text="in a"))
    memory.append("b", Turn(role="user", text="in b"))
    assert [t.text for t in memory.load("a").turns] == ["in a"]
    assert [t.text for t in memory.load("b").turns] == ["in b"]


def test_clear_forgets_one_conversation(redis_client, key_prefix):
    memory = make_memory(redis_client, key_prefix, token_budget=5, summarizer=RecordingSummarizer())
    five_word_turns(memory, "a", 3)
    memory.load("a")  # so there is a summary too
    memory.append("b", Turn(role="user", text="in b"))

    assert memory.clear("a") is True
    assert memory.clear("a") is False
    assert memory.load("a").turns == [] and memory.load("a").summary == "" and memory.ttl("a") == -2
    assert [t.text for t in memory.load("b").turns] == ["in b"]


def test_rename_continues_a_conversation_under_the_thread_id(redis_client, key_prefix):
    memory = make_memory(redis_client, key_prefix, ttl_seconds=100)
    memory.append("thread", Turn(role="user", text="earlier in the thread"))
    memory.append("ask-1", Turn(role="user", text="asked with /ask"), Turn(role="assistant", text="answer"))

    assert memory.rename("ask-1", "thread") == 2

    assert [t.text for t in memory.load("thread").turns] == [
        "earlier in the thread",
        "asked with /ask",
        "answer",
    ]
    assert memory.ttl("ask-1") == -2 and 95 <= memory.ttl("thread") <= 100
    assert memory.rename("ask-1", "thread") == 0 and len(memory.load("thread").turns) == 3
    assert memory.rename("thread", "thread") == 0 and len(memory.load("thread").turns) == 3


@pytest.mark.parametrize("bad", ["", "has space", "tab\there", "trailing-newline\n", "x" * 129, None])
def test_invalid_conversation_ids_are_refused(redis_client, key_prefix, bad):
    memory = make_memory(redis_client, key_prefix)
    for call in (
        lambda: memory.append(bad, Turn(role="user", text="hi")),
        lambda: memory.load(bad),
        lambda: memory.clear(bad),
        lambda: memory.ttl(bad),
    ):
        with pytest.raises(
            InvalidArgument, match="conversation id .* 1 to 128 characters without whitespace"
        ):
            call()
    assert redis_client.keys(f"{key_prefix}:*") == []


def test_the_longest_valid_id_and_a_discord_thread_id_work(redis_client, key_prefix):
    memory = make_memory(redis_client, key_prefix)
    for conversation_id in ("x" * 128, "1234567890123456789"):
        memory.append(conversation_id, Turn(role="user", text="hi"))
        assert [t.text for t in memory.load(conversation_id).turns] == ["hi"]


def test_a_turn_with_an_unknown_role_is_refused(redis_client, key_prefix):
    with pytest.raises(InvalidArgument, match="role"):
        make_memory(redis_client, key_prefix).append("t", Turn(role="system", text="hi"))  # type: ignore[arg-type]


def test_a_new_memory_object_sees_everything_as_after_a_restart(redis_url, redis_client, key_prefix):
    before = make_memory(redis_client, key_prefix, token_budget=12, summarizer=RecordingSummarizer())
    five_word_turns(before, "t", 5)
    loaded = before.load("t")

    with redis.Redis.from_url(redis_url) as fresh_client:
        after = make_memory(fresh_client, key_prefix, token_budget=12, summarizer=RecordingSummarizer())
        assert after.load("t") == loaded
        assert loaded.summary == "q0 q1 q2" and len(loaded.turns) == 2


def _append_from_a_process(url: str, prefix: str, name: str, count: int, start) -> None:
    client = redis.Redis.from_url(url)
    memory = ConversationMemory(client, prefix=prefix, max_turns=1000)
    start.wait(30)
    for i in range(count):
        memory.append("shared", Turn(role="user", text=f"{name}-{i}", author=name))
    client.close()


def test_two_processes_appending_at_once_lose_nothing(redis_url, redis_client, key_prefix):
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    processes = [
        context.Process(target=_append_from_a_process, args=(redis_url, key_prefix, name, 100, start))
        for name in ("a", "b")
    ]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
            assert process.exitcode == 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()

    texts = stored_texts(redis_client, key_prefix, "shared")
    assert len(texts) == 200
    for name in ("a", "b"):
        assert [t for t in texts if t.startswith(f"{name}-")] == [f"{name}-{i}" for i in range(100)]
