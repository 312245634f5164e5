"""Conversation memory's pure logic: token counting and window selection (no Redis)."""

from __future__ import annotations

import pathlib

import ragcord
from ragcord.memory import Turn, WordEstimate, select_window


def user(text: str) -> Turn:
    return Turn(role="user", text=text)


def assistant(text: str) -> Turn:
    return Turn(role="assistant", text=text)


# -- counting tokens -------------------------------------------------------------------------------------


def test_tokens_are_estimated_from_words():
    counter = WordEstimate()
    assert counter.count("") == 0
    assert counter.count("one two three") == 4  # ceil(3 * 4 / 3)
    assert counter.count("a b c d e f g") == 10  # ceil(7 * 4 / 3)
    assert counter.count("  spaced\tout\nwords  ") == 4


def test_the_estimate_decides_which_turns_fit_the_budget():
    turns = [user("one two three"), assistant("four five six"), user("seven eight nine")]
    folded, window = select_window(turns, 8, WordEstimate())  # 4 tokens per turn
    assert window == turns[1:] and folded == turns[:1]


def test_ragcord_does_not_use_tiktoken():
    package = pathlib.Path(ragcord.__file__).parent
    users = [str(path) for path in package.rglob("*.py") if "tiktoken" in path.read_text(encoding="utf-8")]
    assert users == []


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
