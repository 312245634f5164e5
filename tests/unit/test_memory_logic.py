"""Conversation memory's pure logic: follow-up rewriting, token counting and window selection (no Redis)."""

from __future__ import annotations

import base64
import hashlib
import inspect
import os
import socket
import sys
import tempfile

import pytest

from ragcord import memory
from ragcord.memory import (
    Conversation,
    TokenCounter,
    Turn,
    load_cached_encoding,
    select_window,
    standalone_query,
    tiktoken_cache_path,
)


def user(text: str) -> Turn:
    return Turn(role="user", text=text)


def assistant(text: str) -> Turn:
    return Turn(role="assistant", text=text)


def history(*turns: Turn) -> Conversation:
    return Conversation(id="c", summary="", turns=list(turns))


VENV = history(user("How do I create a virtual environment?"), assistant("Run python -m venv .venv [1]."))


# -- standalone_query -------------------------------------------------------------------------------------


def test_a_follow_up_is_prefixed_with_the_previous_question():
    assert standalone_query(VENV, "and how do I activate it?") == (
        "How do I create a virtual environment? and how do I activate it?"
    )


def test_a_self_contained_question_is_returned_unchanged():
    question = "Which Python versions does Quillstack support on Windows servers today?"
    assert standalone_query(VENV, question) == question


@pytest.mark.parametrize(
    "question",
    [
        "On Windows?",  # short
        "And where do the configuration files of the virtual environment live on disk?",  # starts with and
        "Also, how would I configure the package index URL for pip in a project?",
        "What about the Windows command prompt and PowerShell, are they different here?",
        "How about installing packages from a private index with authentication tokens?",
        "So which version of the Python interpreter should the build servers be running?",
        "Can I delete those folders safely after upgrading the Python interpreter version?",  # anaphora
        "Does the activation script work the same when there are spaces in the path?",
    ],
)
def test_follow_ups_are_recognised(question):
    assert standalone_query(VENV, question) == f"How do I create a virtual environment? {question}"


def test_up_to_the_last_two_user_questions_are_used_most_recent_last():
    conversation = history(
        user("first question about logging"),
        assistant("answer one"),
        user("second question about handlers"),
        assistant("answer two"),
        user("third question about formatters"),
        assistant("answer three"),
    )
    assert standalone_query(conversation, "and filters?") == (
        "second question about handlers third question about formatters and filters?"
    )


def test_without_earlier_user_questions_the_question_stands_alone():
    assert standalone_query(Conversation(id="c", summary="", turns=[]), "and then?") == "and then?"
    assert standalone_query(history(assistant("Hello! Ask me anything.")), "how?") == "how?"
    assert standalone_query(VENV, "   ") == "   "


def test_the_query_is_capped_by_dropping_the_oldest_words():
    long = history(user(" ".join(f"w{i}" for i in range(100))))
    query = standalone_query(long, "and that one?")
    words = query.split()
    assert len(words) == 60
    assert words[-3:] == ["and", "that", "one?"] and words[0] == "w43"  # the newest context words stay


def test_a_question_longer_than_the_cap_is_never_cut():
    question = "Why does it fail " + "again " * 70
    assert standalone_query(VENV, question) == question


# -- TokenCounter ----------------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Records (and refuses) every attempt to open a connection."""
    attempts: list[object] = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("the network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: attempts.append(a) or [])
    return attempts


def test_without_a_cached_encoding_tokens_are_estimated_from_words(tmp_path, no_network):
    counter = TokenCounter(cache_dir=str(tmp_path))
    assert counter.count("") == 0
    assert counter.count("one two three") == 4  # ceil(3 * 4 / 3)
    assert counter.count("a b c d e f g") == 10  # ceil(7 * 4 / 3)
    assert counter.exact is False
    assert no_network == []


def test_a_stale_cache_file_is_ignored_without_downloading(tmp_path, no_network):
    path = tiktoken_cache_path(str(tmp_path))
    with open(path, "wb") as f:
        f.write(b"not the real file")
    counter = TokenCounter(cache_dir=str(tmp_path))
    assert counter.count("one two three") == 4
    assert no_network == []
    assert open(path, "rb").read() == b"not the real file"  # left alone, unlike tiktoken's own loader


def test_when_tiktoken_cannot_be_imported_the_estimate_is_used(tmp_path, monkeypatch):
    def load_with_tiktoken(path):
        import tiktoken  # raises ImportError: see below

        return tiktoken

    monkeypatch.setitem(sys.modules, "tiktoken", None)
    monkeypatch.setattr(memory, "load_cached_encoding", load_with_tiktoken)
    counter = TokenCounter(cache_dir=str(tmp_path))
    assert counter.count("one two three") == 4


def test_the_encoding_is_looked_for_once(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "load_cached_encoding", lambda path: calls.append(path))
    counter = TokenCounter(cache_dir=str(tmp_path))
    for _ in range(3):
        counter.count("some words here")
    assert len(calls) == 1


def test_the_cache_path_follows_tiktokens_rules(monkeypatch):
    name = hashlib.sha1(
        b"https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    ).hexdigest()
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    assert tiktoken_cache_path() == os.path.join(tempfile.gettempdir(), "data-gym-cache", name)
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", "/gym")
    assert tiktoken_cache_path() == os.path.join("/gym", name)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "/tik")
    assert tiktoken_cache_path() == os.path.join("/tik", name)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken's switch for "no cache": always download
    assert tiktoken_cache_path() is None
    assert tiktoken_cache_path("/given") == os.path.join("/given", name)


def test_a_cached_bpe_file_with_the_expected_hash_becomes_an_encoding(tmp_path):
    pytest.importorskip("tiktoken")
    ranks = {bytes([b]): b for b in range(256)} | {b"ab": 256}
    data = b"".join(base64.b64encode(token) + b" %d\n" % rank for token, rank in ranks.items())
    path = tmp_path / "bpe"
    path.write_bytes(data)
    encoding = load_cached_encoding(str(path), hashlib.sha256(data).hexdigest())
    assert encoding.encode("ab") == [256]
    assert encoding.encode("abc") == [256, ord("c")]
    assert load_cached_encoding(str(path)) is None  # not cl100k_base's hash
    assert load_cached_encoding(str(tmp_path / "missing")) is None


def test_the_cl100k_constants_match_the_installed_tiktoken():
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    source = inspect.getsource(openai_public.cl100k_base)
    assert memory._CL100K_URL in source and memory._CL100K_SHA256 in source
    assert memory._CL100K_PATTERN in source
    names = {value: name for name, value in vars(openai_public).items() if isinstance(value, str)}
    for token, rank in memory._CL100K_SPECIAL.items():
        assert f"{names[token]}: {rank}," in source


# -- select_window -----------------------------------------------------------------------------------------


class WordCounter:
    def count(self, text: str) -> int:
        return len(text.split())


def test_the_window_is_the_most_recent_turns_within_the_budget():
    turns = [user("one two three"), assistant("four five"), user("six seven eight nine"), assistant("ten")]
    folded, window = select_window(turns, 6, WordCounter())
    assert window == turns[2:] and folded == turns[:2]
    folded, window = select_window(turns, 7, WordCounter())  # exactly the budget still fits
    assert window == turns[1:] and folded == turns[:1]
    folded, window = select_window(turns, 100, WordCounter())
    assert window == turns and folded == []


def test_the_window_always_keeps_the_last_turn():
    turns = [user("short"), assistant("word " * 500)]
    folded, window = select_window(turns, 10, WordCounter())
    assert window == turns[1:] and folded == turns[:1]


def test_the_window_is_contiguous():
    turns = [user("tiny"), assistant("a long answer " * 10), user("tiny")]
    folded, window = select_window(turns, 5, WordCounter())
    assert window == turns[2:] and folded == turns[:2]


def test_an_empty_conversation_has_an_empty_window():
    assert select_window([], 10, WordCounter()) == ([], [])


def test_turns_survive_json_with_every_field():
    turn = Turn(role="assistant", text="Use venv [1] ✓", author="", at=12.5, cited_urls=("http://d/a",))
    assert Turn.from_json(turn.to_json()) == turn


def test_the_cache_path_is_where_tiktoken_writes(tmp_path, monkeypatch, no_network):
    load = pytest.importorskip("tiktoken.load")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(load, "read_file", lambda blobpath: b"downloaded")  # stands in for the download
    load.read_file_cached(memory._CL100K_URL)
    assert open(tiktoken_cache_path(), "rb").read() == b"downloaded"
