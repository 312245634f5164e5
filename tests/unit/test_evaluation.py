"""Scoring a golden set: which citations count as the right page, and the figures ragcord eval prints."""

from __future__ import annotations

import itertools

import pytest

from ragcord.errors import InvalidArgument
from ragcord.evaluation import (
    Golden,
    Reply,
    evaluate,
    golden_from_feedback,
    has_key_term,
    load_golden,
    matches,
    parse_golden,
    rank,
)


@pytest.mark.parametrize(
    ("expected", "cited", "right"),
    [
        ("library/functools.html", "http://docs/library/functools.html#functools.lru_cache", True),
        ("/library/functools.html", "http://docs/3.11/library/functools.html", True),
        (
            "functools.html#functools.lru_cache",
            "http://docs/library/functools.html#functools.lru_cache",
            True,
        ),
        ("functools.html#functools.cache", "http://docs/library/functools.html#functools.lru_cache", False),
        ("tutorial/", "http://docs/tutorial/index.html", True),
        ("http://docs/tutorial/index.html", "http://docs/tutorial/", True),
        ("http://docs/a.html", "http://other/a.html", False),
        ("tools.html", "http://docs/library/functools.html", False),
        ("guide/A Basic Step.html", "http://docs/guide/A%20Basic%20Step.html", True),
        ("http://docs/", "http://docs/index.html", True),
    ],
)
def test_a_citation_is_right_when_it_is_the_expected_page(expected, cited, right):
    assert matches(expected, cited) is right


def test_rank_is_the_position_of_the_first_right_citation():
    assert rank(["b.html"], ["http://d/a.html", "http://d/b.html#x", "http://d/b.html"]) == 2
    assert rank(["c.html"], ["http://d/a.html"]) is None


def test_key_terms_match_what_discord_shows_not_the_markdown_escapes():
    assert has_key_term(["lru_cache"], r"Use the @functools.lru\_cache decorator.")
    assert has_key_term(["python -m venv"], "Run  python -m\nvenv .venv")
    assert not has_key_term(["lru_cache"], "Use a dict.")
    assert has_key_term(["du(1)"], "`du`(1) reports the disk space usage")  # as Discord shows it
    assert has_key_term(["run ls -l"], "**Run** ``ls -l``")
    assert has_key_term([], "anything") is None  # nothing to look for


def test_follow_ups_are_asked_in_the_same_conversation_and_scored_apart():
    golden = parse_golden(
        [
            {
                "question": "What is a virtual environment?",
                "expected": "venv.html",
                "key_terms": ["isolated"],
                "follow_up": {
                    "question": "how do I make one?",
                    "expected": ["venv.html"],
                    "key_terms": "-m venv",
                },
            },
            {"question": "How do I read a file?", "expected": ["tutorial/inputoutput.html"]},
        ]
    )
    asked: list[tuple[str, str]] = []
    replies = {
        "What is a virtual environment?": Reply(
            "An isolated environment.", ("http://d/venv.html",), True, "c1"
        ),
        "how do I make one?": Reply(
            "Run python -m venv.", ("http://d/x.html", "http://d/venv.html"), True, "c1"
        ),
        "How do I read a file?": Reply("I couldn't find this.", ("http://d/other.html",), False, "c2"),
    }

    def ask(question: str, conversation: str) -> Reply:
        asked.append((question, conversation))
        return replies[question]

    ids = (f"c{n}" for n in itertools.count(1))
    report = evaluate(golden, ask, new_conversation=lambda: next(ids))

    assert asked == [
        ("What is a virtual environment?", "c1"),
        ("how do I make one?", "c1"),
        ("How do I read a file?", "c2"),
    ]
    assert report.count(1) == 2 and report.count(2) == 1
    assert report.hit_at(1, turn=1) == 0.5 and report.hit_at(5, turn=2) == 1.0
    assert report.mrr() == pytest.approx((1 + 0.5 + 0) / 3)
    assert report.key_terms() == 1.0  # both turns that name a key term have it
    assert [s.golden.question for s in report.misses()] == ["How do I read a file?"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "non-empty list"),
        ([{"question": "", "expected": "a.html"}], "question 1: `question`"),
        ([{"question": "q"}], "`expected` must be a string or a list"),
        ([{"question": "q", "expected": []}], "at least one URL"),
        (
            [{"question": "q", "expected": "a", "follow_up": {"question": "f"}}],
            r'question 1 \("q"\), follow-up \("f"\): `expected`',
        ),
    ],
)
def test_a_bad_golden_set_names_the_question_and_what_to_fix(data, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_golden(data, source="golden.yaml")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            [
                {"question": "q", "expected": "a.html"},
                {"question": "how do i log in", "expectd": "auth.html"},
            ],
            """golden.yaml, question 2 ("how do i log in"): unknown key 'expectd' """
            "(allowed: question, expected, key_terms, follow_up)",
        ),
        (
            [
                {
                    "question": "q",
                    "expected": "a",
                    "follow_up": {"question": "f", "expected": "b", "keyterms": "x"},
                }
            ],
            """golden.yaml, question 1 ("q"), follow-up ("f"): unknown key 'keyterms' """
            "(allowed: question, expected, key_terms)",
        ),
        (  # only one follow-up is asked: a second, nested one would be dropped unasked
            [
                {
                    "question": "q",
                    "expected": "a",
                    "follow_up": {"question": "f", "expected": "b", "follow_up": {}},
                }
            ],
            """golden.yaml, question 1 ("q"), follow-up ("f"): unknown key 'follow_up' """
            "(allowed: question, expected, key_terms)",
        ),
        (
            [{"question": "What does " + "very " * 20 + "long mean?", "expected": "a", "note": "x"}],
            """golden.yaml, question 1 ("What does very very very very very..."): unknown key 'note' """,
        ),
    ],
)
def test_a_misspelt_key_is_an_error_naming_the_question_the_key_and_the_allowed_ones(data, message):
    with pytest.raises(InvalidArgument) as raised:
        parse_golden(data, source="golden.yaml")
    assert str(raised.value).startswith(message)


def test_malformed_yaml_is_one_line_with_the_file_line_and_column(tmp_path):
    golden = tmp_path / "golden.yaml"
    golden.write_text("questions:\n  - question: how do i log in\n    expected: auth.html: x\n")
    with pytest.raises(InvalidArgument) as raised:
        load_golden(golden)
    assert str(raised.value) == f"{golden} line 3, column 24: mapping values are not allowed here"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read {path}: No such file or directory"),
        (b"questions:\n  - question: caf\xe9\n", "cannot read {path}: not UTF-8 text (byte 28)"),
    ],
    ids=["missing", "not UTF-8"],
)
def test_a_golden_file_that_cannot_be_read_says_why_in_one_line(tmp_path, content, message):
    golden = tmp_path / "golden.yaml"
    if content is not None:
        golden.write_bytes(content)
    with pytest.raises(InvalidArgument) as raised:
        load_golden(golden)
    assert str(raised.value) == message.format(path=golden)


def test_answers_voted_up_become_a_starting_golden_set():
    rows = golden_from_feedback(
        [
            ("How do I log in?", ["http://d/auth.html#login", "http://d/auth.html"], 2, 0),
            ("how do i  log in?", ["http://d/other.html"], 5, 0),  # the same question again
            ("Why is it slow?", ["http://d/perf.html"], 1, 3),  # voted down
            ("What is X?", [], 1, 0),  # cited nothing
        ]
    )
    assert rows == [{"question": "How do I log in?", "expected": ["http://d/auth.html"]}]
    assert parse_golden(rows)[0] == Golden("How do I log in?", ("http://d/auth.html",))
