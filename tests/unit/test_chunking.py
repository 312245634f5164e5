from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ragcord.knowledge.chunking import chunk_id, chunk_markdown, content_hash

PAGE = """# Virtual environments

A virtual environment is a self-contained directory tree.

## Create one

Run the venv module.

```bash
python -m venv .venv
```

## Activate it

### On POSIX

source .venv/bin/activate
"""


def test_chunks_carry_their_heading_path():
    chunks = chunk_markdown(PAGE, max_words=180)
    assert [c.heading for c in chunks] == [
        "Virtual environments",
        "Virtual environments > Create one",
        "Virtual environments > Activate it > On POSIX",
    ]
    assert "python -m venv .venv" in chunks[1].text
    assert [c.index for c in chunks] == [0, 1, 2]


def test_a_heading_inside_a_code_block_is_code():
    chunks = chunk_markdown("# Real\n\n```\n# not a heading\n```\n", max_words=50)
    assert len(chunks) == 1
    assert "# not a heading" in chunks[0].text


def test_long_sections_split_under_the_limit_on_sentences():
    sentence = "The scheduler retries failed tasks with exponential backoff. "
    chunks = chunk_markdown("# Retries\n\n" + sentence * 60, max_words=50)
    assert len(chunks) > 1
    assert all(len(c.text.split()) <= 50 for c in chunks)
    assert all(c.text.rstrip().endswith(".") for c in chunks)


def test_ids_and_hashes_are_deterministic():
    assert chunk_id("http://x/a", 0) == chunk_id("http://x/a", 0)
    assert chunk_id("http://x/a", 0) != chunk_id("http://x/a", 1)
    assert content_hash("a  b\nc") == content_hash("a b c")


words = st.text(alphabet="abcdefghij", min_size=1, max_size=12)
lines = st.one_of(
    st.lists(words, min_size=1, max_size=40).map(" ".join),
    st.just(""),
    st.just("```"),
    words.map(lambda w: "## " + w),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(lines, max_size=60), st.integers(min_value=5, max_value=60))
def test_no_chunk_exceeds_the_limit_and_no_word_is_lost(page_lines, limit):
    markdown = "\n".join(page_lines)
    chunks = chunk_markdown(markdown, max_words=limit)
    assert all(len(c.text.split()) <= limit for c in chunks)
    body_words, in_code = [], False
    for line in page_lines:
        in_code ^= line.startswith("```")
        if in_code or not line.startswith("## ") or line.startswith("```"):
            body_words += line.split()
    assert [w for c in chunks for w in c.text.split()] == body_words
