"""Follow-up questions become standalone search queries (pure logic, no model)."""

from __future__ import annotations

import pytest

from ragcord.answering.followup import is_follow_up, own_terms, standalone_query
from ragcord.memory import Conversation, Turn


def user(text: str) -> Turn:
    return Turn(role="user", text=text)


def assistant(text: str) -> Turn:
    return Turn(role="assistant", text=text)


def history(*turns: Turn) -> Conversation:
    return Conversation(id="c", summary="", turns=list(turns))


VENV = history(user("How do I create a virtual environment?"), assistant("Run python -m venv .venv [1]."))


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


@pytest.mark.parametrize(
    ("question", "follow_up"),
    [
        ("write a class with a constructor", False),  # short, but it names its own subject: a new topic
        ("change the system timezone", False),
        ("show me an example", True),  # short and names nothing of its own
        ("with pip?", True),
        ("how do I make one?", True),  # points back
    ],
)
def test_a_short_question_that_names_its_own_subject_is_a_new_topic(question, follow_up):
    expected = f"How do I create a virtual environment? {question}" if follow_up else question
    assert standalone_query(VENV, question) == expected


@pytest.mark.parametrize(
    "question",
    [
        "how do I check that a file exists",
        "make sure that the server restarts after a crash",
    ],
)
def test_that_opening_a_clause_does_not_make_a_follow_up(question):
    assert not is_follow_up(question)
    assert standalone_query(VENV, question) == question


def test_that_pointing_back_still_makes_a_follow_up():
    assert is_follow_up("how do I undo that")


def test_a_follow_ups_own_terms_are_the_words_the_thread_did_not_use():
    assert own_terms(["how do i get the mouse position"], "and how do i read the clipboard") == {
        "read",
        "clipboard",
    }
