"""The documented rule that decides whether a forum post is a question (ragcord.support.is_question)."""

from __future__ import annotations

import pytest

from ragcord.support import is_question


@pytest.mark.parametrize(
    ("title", "text"),
    [
        ("Install fails", "How do I make a separate environment?"),  # question mark
        ("venv not activating", "I ran the command and I'm stuck"),  # asks for help, no mark
        ("How to configure the cache", ""),  # interrogative start, no mark
        ("Can I use it offline", "asking for a friend"),
        ("Build broken after upgrade", "The build is broken since 2.0"),  # reports a failure
        ("Error on startup", "Traceback (most recent call last): ..."),
        ("Need help", "with the config file"),
    ],
)
def test_questions(title: str, text: str) -> None:
    assert is_question(title, text)


@pytest.mark.parametrize(
    ("title", "text"),
    [
        ("thanks!", ""),
        ("Thank you", "thanks so much, it works now"),
        ("Solved", "nvm"),
        ("Release 2.0 is out", "Download it from the website. New: dark mode."),  # announcement
        ("Show and tell", "I built a dashboard with Quillstack."),
        ("hi", ""),
    ],
)
def test_not_questions(title: str, text: str) -> None:
    assert not is_question(title, text)
