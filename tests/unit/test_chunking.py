from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ragcord.knowledge.chunking import (
    SENTENCE_END,
    Section,
    blocks,
    chunk_id,
    chunk_markdown,
    chunk_sections,
    content_hash,
)

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
    chunks = chunk_markdown(PAGE, max_words=12)  # too small for a section and its subsections together
    assert [c.heading for c in chunks] == [
        "Virtual environments",
        "Virtual environments > Create one",
        "Virtual environments > Activate it > On POSIX",
    ]
    assert "python -m venv .venv" in chunks[1].text
    assert [c.index for c in chunks] == [0, 1, 2]


def test_small_subsections_join_their_section_under_their_own_heading():
    # A whole page that fits one chunk is one passage: the answer quotes it whole, the citation lands on top.
    [chunk] = chunk_markdown(PAGE, max_words=180)
    assert chunk.heading == "Virtual environments"
    assert chunk.text.index("Create one") < chunk.text.index("python -m venv .venv")
    assert "Activate it › On POSIX" in chunk.text


def test_an_api_entry_and_its_parts_are_one_chunk_with_the_entry_anchor():
    entry = ("Functions", "g_rand_int_range ()")
    sections = [
        Section(
            entry, "g-rand-int-range", "gint32 g_rand_int_range (GRand *rand_, gint32 begin, gint32 end);"
        ),
        Section(
            (*entry, "Parameters"), "g-rand-int-range.parameters", "begin | lower bound\nend | upper bound"
        ),
        Section((*entry, "Returns"), "g-rand-int-range.returns", "a random number"),
        Section(("Functions", "g_rand_double ()"), "g-rand-double", "gdouble g_rand_double (GRand *rand_);"),
    ]
    chunks = chunk_sections(sections, max_tokens=100)
    assert [(c.heading, c.anchor) for c in chunks] == [
        ("Functions > g_rand_int_range ()", "g-rand-int-range"),
        ("Functions > g_rand_double ()", "g-rand-double"),
    ]
    assert "Returns\n\na random number" in chunks[0].text


def test_an_api_entry_whose_signature_names_it_joins_without_its_name_on_a_line_of_its_own():
    # Sphinx: the entry "today" under "date Objects" is `classmethod date.today()`; a line "today" above
    # the signature said it twice and was quoted glued to it.
    sections = [
        Section(("date Objects",), "date-objects", "Other constructors, all class methods:"),
        Section(
            ("date Objects", "today"), "datetime.date.today", "classmethod date.today()\n\nReturn the date."
        ),
        Section(("date Objects", "Notes"), "notes", "Dates are naive."),
    ]
    [chunk] = chunk_sections(sections, max_tokens=100)
    assert chunk.text == (
        "Other constructors, all class methods:\n\nclassmethod date.today()\n\nReturn the date."
        "\n\nNotes\n\nDates are naive."
    )


def test_a_large_subsection_keeps_its_own_chunk_and_anchor():
    long_text = " ".join(["word"] * 60)
    sections = [
        Section(("Guide",), "guide", "Intro."),
        Section(("Guide", "Details"), "details", long_text),
    ]
    chunks = chunk_sections(sections, max_tokens=100)
    assert [c.anchor for c in chunks] == ["guide", "details"]


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


def test_chunks_keep_their_section_anchor_and_heading():
    sections = [
        Section((), "", "Intro text before any heading."),
        Section(
            ("functools", "lru_cache"), "functools.lru_cache", "@functools.lru_cache(maxsize=128)\n\nBody."
        ),
    ]
    chunks = chunk_sections(sections, max_tokens=50)
    assert [(c.heading, c.anchor) for c in chunks] == [
        ("", ""),
        ("functools > lru_cache", "functools.lru_cache"),
    ]
    assert chunks[1].text == "@functools.lru_cache(maxsize=128)\n\nBody."


def test_a_code_block_that_fits_stays_whole_even_with_blank_lines():
    code = "```python\ndef f():\n    return 1\n\n\ndef g():\n    return 2\n```"
    chunks = chunk_sections([Section(("A",), "a", f"Before.\n\n{code}\n\nAfter.")], max_tokens=40)
    assert len(chunks) == 1 and code in chunks[0].text


def test_a_long_code_block_splits_on_lines_and_each_piece_is_fenced():
    lines = [f"call_{i}(argument_one, argument_two)" for i in range(60)]
    code = "```python\n" + "\n".join(lines) + "\n```"
    chunks = chunk_sections([Section(("A",), "a", code)], max_tokens=30)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.text.startswith("```python\n") and chunk.text.endswith("\n```")
        assert len(chunk.text.split()) <= 30
    body = [line for c in chunks for line in c.text.split("\n")[1:-1]]
    assert body == lines


def test_lists_and_tables_split_between_lines_not_inside_them():
    table = "\n".join(f"package-{i} | V:{i} | description of package number {i}" for i in range(40))
    chunks = chunk_sections([Section(("Packages",), "pkgs", table)], max_tokens=40)
    assert len(chunks) > 1
    assert [line for c in chunks for line in c.text.split("\n")] == table.split("\n")


def test_a_pluggable_token_counter_sets_the_limit():
    def characters(text: str) -> int:
        return len(text)

    text = "Short sentence one. Short sentence two. Short sentence three. Short sentence four."
    chunks = chunk_sections([Section((), "", text)], max_tokens=45, count_tokens=characters)
    assert all(len(c.text) <= 45 for c in chunks) and len(chunks) == 2
    assert all(c.text.endswith(".") for c in chunks)


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
    # a code block split over chunks is fenced again in each: fences are the only words added
    assert [w for c in chunks for w in c.text.split() if w != "```"] == [w for w in body_words if w != "```"]


def test_blocks_keep_a_fence_whole_until_its_own_closing_fence():
    text = "Intro line\n````md\n```py\nx = 1\n\n```\n````\nAfter.\n\n~~~\ny\n~~~"
    assert blocks(text) == ["Intro line", "````md\n```py\nx = 1\n\n```\n````", "After.", "~~~\ny\n~~~"]


def test_a_fence_a_passage_leaves_open_is_closed_on_request():
    assert blocks("Run:\n\n```sh\nmake") == ["Run:", "```sh\nmake"]
    assert blocks("Run:\n\n```sh\nmake", close_open_fence=True) == ["Run:", "```sh\nmake\n```"]


def test_sentences_end_before_a_capital_digit_quote_or_code_not_after_an_abbreviation():
    text = "Use e.g. the flag. Then run it! `make` builds v1.2 too. 3 more? (Yes.) done."
    assert SENTENCE_END.split(text) == [
        "Use e.g. the flag.",
        "Then run it!",
        "`make` builds v1.2 too.",
        "3 more?",
        "(Yes.) done.",
    ]


@given(
    st.lists(st.text(alphabet="abc ,.", min_size=0, max_size=400), min_size=1, max_size=4),
    st.integers(min_value=1, max_value=40),
)
@settings(max_examples=200, deadline=None)
def test_counting_words_cuts_where_any_other_counter_of_words_would(lines, limit):
    """Word counts take a shortcut through long runs of words; another counter of words takes the long way."""
    section = Section(("Title",), "", "\n".join(lines))

    def words(text: str) -> int:
        return len(text.split())

    assert chunk_sections([section], max_tokens=limit) == chunk_sections(
        [section], max_tokens=limit, count_tokens=words
    )
