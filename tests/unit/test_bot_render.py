from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.render import format_answer, shorten, split_message
from ragcord.answering.types import Answer, Citation


def test_citations_become_links_without_previews():
    answer = Answer(
        text="Use a venv [1].",
        found=True,
        citations=[Citation(1, "https://d.example/venv", "Virtual [envs]", "", 1.0)],
    )
    assert format_answer(answer) == (
        "Use a venv [1].\n\n**Sources**\n[1] [Virtual (envs)](<https://d.example/venv>)"
    )


def test_a_3000_character_answer_is_split_at_paragraphs_and_keeps_code_blocks_whole():
    prose = ("The scheduler retries failed tasks with backoff. " * 12).strip()
    code = "```python\n" + "\n".join(f"print({i})" for i in range(40)) + "\n```"
    text = "\n\n".join([prose, code, prose, "[1] [Retries](<https://d.example/retries>)", prose])
    assert len(text) > 2000
    parts = split_message(text)
    assert len(parts) >= 2 and all(len(p) <= 2000 for p in parts)
    assert all(p.count("```") % 2 == 0 for p in parts)
    assert code in parts[0] or any(code in p for p in parts)
    assert "".join(parts).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")


def test_an_enormous_code_block_is_split_into_closed_blocks():
    code = "```bash\n" + "\n".join(f"echo line {i} " + "x" * 40 for i in range(120)) + "\n```"
    parts = split_message(code)
    assert len(parts) > 1
    assert all(p.startswith("```bash\n") and p.endswith("\n```") and len(p) <= 2000 for p in parts)


links = st.builds(
    lambda t, u: f"[{t}](<https://d.example/{u}>)",
    st.text("abc de", min_size=1, max_size=30),
    st.text("abcdef", min_size=1, max_size=30),
)
words = st.one_of(st.text("abcdefghij", min_size=1, max_size=15), links)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(words, min_size=1, max_size=80).map(" ".join), min_size=1, max_size=40))
def test_splitting_never_breaks_a_link(paragraphs):
    text = "\n\n".join(paragraphs)
    parts = split_message(text, limit=300)
    assert all(len(p) <= 300 for p in parts)
    link = re.compile(r"\[[^\]\n]*\]\(<https://d\.example/[a-f]+>\)")
    assert sorted(m for p in parts for m in link.findall(p)) == sorted(link.findall(text))


def test_thread_names_are_short_single_lines():
    assert shorten("How do I\nactivate it?") == "How do I activate it?"
    assert len(shorten("word " * 100)) <= 90


def test_documentation_text_is_escaped_for_discord_but_code_is_not():
    answer = Answer(
        text=(
            "**functools › lru_cache**\n"
            "Wraps `f(*args, **kwargs)`; call it with *args and **kwargs, see __init__ and snake_case.\n"
            "```python\n@lru_cache\ndef fib(n): return n * __x__\n```\n[1]"
        ),
        found=True,
        citations=[Citation(1, "https://d.example/functools#lru_cache", "functools", "", 1.0)],
    )
    shown = format_answer(answer)
    assert shown.startswith("**functools › lru_cache**\n")  # the intro stays bold
    assert "`f(*args, **kwargs)`" in shown  # inline code as it is
    assert r"call it with \*args and \*\*kwargs, see \_\_init\_\_ and snake_case." in shown
    assert "```python\n@lru_cache\ndef fib(n): return n * __x__\n```" in shown
    assert shown.endswith("[1] [functools](<https://d.example/functools#lru_cache>)")


def test_quotes_with_code_split_into_messages_only_between_fences():
    code = "```python\n" + "\n".join(f"value_{i} = compute({i})" for i in range(30)) + "\n```"
    quote = "**Section › Example**\nCompute the values like this:\n" + code + "\n[1]"
    text = "\n\n".join([quote] * 4)
    assert len(text) > 2000
    parts = split_message(text)
    assert all(len(p) <= 2000 for p in parts)
    assert all(p.count("```") % 2 == 0 for p in parts)  # no message opens a fence it does not close
    assert sum(p.count(code) for p in parts) == 4  # every block whole, in one message


def test_a_streaming_preview_closes_its_open_code_fence_and_fits_one_message():
    from bot.render import preview

    text = "Run this:\n\n```bash\n" + "\n".join(f"echo line {i}" for i in range(400))
    shown = preview(text)
    assert len(shown) <= 1902 and shown.endswith("```" + " …")
    assert shown.count("```") % 2 == 0
    assert preview("Use *args* here") == "Use \\*args\\* here …"


def test_a_long_list_is_split_between_sentences_and_keeps_its_lines():
    items = "\n".join(f"- Item {n} is one line. It says more." for n in range(60))
    messages = split_message(items, 400)
    assert all(len(m) <= 400 for m in messages)
    lines = [line for m in messages for line in m.split("\n")]
    assert sum(line.startswith("- Item") for line in lines) == 60  # each item on a line of its own
