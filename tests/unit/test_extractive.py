"""The extractive answerer quotes whole units of real-looking documentation passages (pure logic)."""

from __future__ import annotations

import dataclasses

from bench.quality import count_fragments
from ragcord.answering.extractive import (
    OPENING_FEATURES,
    ExtractiveAnswerer,
    _whole,
    opening_features,
    section_label,
)
from ragcord.answering.text import passage_units
from ragcord.answering.tuning import DEFAULT_TUNING
from ragcord.knowledge.search import Hit
from ragcord.knowledge.stores import StoredChunk
from ragcord.memory import Conversation, Turn

READING = """`f.read(size)` reads some quantity of data and returns it as a string.

To read lines from a file, you can loop over the file object. This is memory efficient, fast, and leads
to simple code:

```python3
>>> for line in f:
...     print(line, end='')
```

`f.readline()` reads a single line from the file; a newline character is left at the end of the string."""

CACHE = """@functools.lru_cache(user_function)

Decorator to wrap a function with a memoizing callable that saves up to the maxsize most recent calls.
It can save time when an expensive or I/O bound function is periodically called with the same arguments.

The cache is threadsafe so the wrapped function can be used in multiple threads."""

ARGPARSE = "The method is called once per line read from the argument file, in order."


def hit(
    text: str,
    *,
    url: str = "http://d/page",
    title: str = "Input and Output — Docs",
    heading: str = "",
    vector: float | None = 0.6,
    anchor: str = "",
) -> Hit:
    chunk = StoredChunk(
        id=url + heading,
        url=url,
        title=title,
        heading=heading,
        chunk_index=0,
        text=text,
        content_hash="",
        indexed_at=0.0,
        anchor=anchor,
    )
    return Hit(chunk=chunk, score=1.0, vector_score=vector, passage=text)


def test_a_how_to_answer_quotes_the_sentence_and_the_code_right_after_it_intact():
    passage = hit(READING, heading="Input and Output > Reading and Writing Files > Methods of File Objects")
    answer = ExtractiveAnswerer().answer("how do i read a file line by line", [passage])
    assert answer.found
    intro, body = answer.text.split("\n", 1)
    assert intro == "**Input and Output › Reading and Writing Files › Methods of File Objects**"
    assert (
        "To read lines from a file, you can loop over the file object. This is memory efficient, fast, "
        "and leads to simple code:\n```python3\n>>> for line in f:\n...     print(line, end='')\n```" in body
    )
    assert count_fragments(answer.text) == 0


TIME = """The following sets system and hardware time to MM/DD hh:mm, CCYY.

```
# date MMDDhhmmCCYY
# hwclock --utc --systohc
```

Times are normally displayed in the local time on the Debian system but the hardware clock uses UTC.

The following reconfigure the timezone used by the Debian system.

```
# dpkg-reconfigure tzdata
```

If you wish to update system time via network, consider to use the NTP service."""


def test_a_lead_in_that_ends_in_a_full_stop_brings_its_code():
    # DocBook's style: "The following ...", "... by the following." then the command, no colon.
    passage = hit(TIME, title="Chapter 9. System tips", heading="System tips > System and hardware time")
    answer = ExtractiveAnswerer().answer("the clock is an hour off, i think the timezone is wrong", [passage])
    lead_in = "The following reconfigure the timezone used by the Debian system."
    assert f"{lead_in}\n```\n# dpkg-reconfigure tzdata" in answer.text
    units = passage_units(TIME)
    assert [u.leads_in for u in units if u.text.startswith("The following")] == [True, True]
    assert not any(u.leads_in for u in units if u.text.startswith(("Times are", "If you wish")))
    assert count_fragments(answer.text) == 0


CAPTIONED = """Then we used `configure_file()` to copy the input file with the CMake variables replaced:

TODO 5: Click to show/hide answer

TODO 5: CMakeLists.txt

```cmake
configure_file(TutorialConfig.h.in TutorialConfig.h)
```

Since the configured file is written into the binary directory, we add that directory to the includes."""


def test_a_code_blocks_caption_between_its_lead_in_and_it_is_skipped_not_a_wall():
    # CMake's tutorial puts a show/hide toggle and the file name between a sentence and its code.
    passage = hit(CAPTIONED, title="Step 1 — CMake", heading="Step 1 > Exercise 3 > Solution")
    question = "how do i generate a header from a template with configure_file"
    answer = ExtractiveAnswerer().answer(question, [passage])
    assert "replaced:\n```cmake\nconfigure_file(TutorialConfig.h.in TutorialConfig.h)\n```" in answer.text
    assert "TODO 5" not in answer.text
    assert count_fragments(answer.text) == 0


ATTRIBUTES_LEAD_IN = "The returned context object is a namespace with the following attributes:"
CONTEXT_ATTRIBUTES = (
    ATTRIBUTES_LEAD_IN
    + "\n\n"
    + "\n".join(
        f"- `{name}` - the {what}, which the builder sets before it calls the hooks of the subclass in turn."
        for name, what in [
            ("env_dir", "location of the virtual environment"),
            ("env_name", "name of the virtual environment"),
            ("prompt", "prompt to be used by the activation scripts"),
            ("executable", "underlying Python executable used by the environment"),
            ("inc_path", "include path for the virtual environment"),
            ("lib_path", "purelib path for the virtual environment"),
            ("bin_path", "script path for the virtual environment"),
        ]
    )
)


def test_an_item_far_down_a_list_comes_with_the_lead_in_that_says_what_the_items_are():
    passage = hit(CONTEXT_ATTRIBUTES, title="venv — Docs", heading="venv > API > ensure_directories")
    answer = ExtractiveAnswerer().answer("where is the purelib path of the env kept", [passage])
    assert answer.text.split("\n")[1] == ATTRIBUTES_LEAD_IN
    assert "- `lib_path` - the purelib path" in answer.text
    assert count_fragments(answer.text) == 0


def test_what_is_left_of_a_quote_after_its_repeats_go_reads_whole():
    # The same `x = MyClass()` block twice in a section: dropping the repeat must not leave the sentence
    # that went on after it ("creates a new instance ...") nor the lead-in that pointed at it.
    units = passage_units(
        "For example (assuming the above class):\n\n```python3\nx = MyClass()\n```\n\n"
        "creates a new instance of the class.\n\nThe instantiation operation creates an empty object."
    )
    kinds = [u.kind for u in units]
    assert kinds == ["sentence", "code", "continuation", "sentence"]
    left = _whole([u for u in units if u.kind != "code"])
    assert [u.text for u in left] == ["The instantiation operation creates an empty object."]
    assert _whole(units) == units


def test_an_api_entry_is_quoted_with_its_signature_and_whole_sentences():
    passage = hit(CACHE, title="functools — Python docs", heading="functools > lru_cache")
    question = "how can i make python remember the result of an expensive function"
    answer = ExtractiveAnswerer().answer(question, [passage])
    assert answer.text.startswith("**functools › lru_cache**\n`@functools.lru_cache(user_function)`\n")
    assert "It can save time when an expensive or I/O bound function is periodically called" in answer.text
    assert count_fragments(answer.text) == 0


def test_one_passage_that_answers_is_quoted_alone():
    best = hit(CACHE, url="http://d/functools", heading="functools > lru_cache")
    weak = hit(ARGPARSE, url="http://d/argparse", heading="argparse > convert_arg_line_to_args")
    answer = ExtractiveAnswerer().answer("cache the result of an expensive function call", [best, weak])
    assert [c.url for c in answer.citations] == ["http://d/functools", "http://d/argparse"]
    assert "argument file" not in answer.text  # the weak page is only linked, not quoted
    assert answer.text.count("**") == 2 and answer.text.endswith("See also [2].")


def test_pages_the_search_ranked_far_lower_are_not_linked():
    best = dataclasses.replace(hit(CACHE, url="http://d/functools"), score=1.0)
    close = dataclasses.replace(hit(ARGPARSE, url="http://d/argparse"), score=0.5)
    far = dataclasses.replace(hit(ARGPARSE, url="http://d/far"), score=0.1)
    answer = ExtractiveAnswerer().answer("cache the result of an expensive function call", [best, close, far])
    assert [c.url for c in answer.citations] == ["http://d/functools", "http://d/argparse"]


def test_see_also_stops_at_five_pages_and_links_each_page_once():
    hits = [hit(CACHE, url="http://d/functools")]
    hits += [hit(ARGPARSE, url=f"http://d/p{n}", anchor=f"a{n % 3}") for n in range(8)]
    hits.insert(2, hit(ARGPARSE, url="http://d/p0", anchor="other"))
    answer = ExtractiveAnswerer().answer("cache the result of an expensive function call", hits)
    pages = [c.page_url for c in answer.citations]
    assert pages == ["http://d/functools", "http://d/p0", "http://d/p1", "http://d/p2", "http://d/p3"]
    assert [c.number for c in answer.citations] == [1, 2, 3, 4, 5]
    assert answer.text.endswith("See also [2], [3], [4] and [5].")
    assert count_fragments(answer.text) == 0


def test_the_best_page_of_the_search_opens_the_answer():
    # The search ranks pages on all their passages; a stray passage elsewhere that happens to repeat the
    # question's words does not open the answer when the best page has a quote nearly as good.
    best = hit(CACHE, url="http://d/functools", heading="functools > lru_cache")
    echo = hit(
        "Cache the result of an expensive function call yourself when the function call is expensive.",
        url="http://d/faq",
        heading="FAQ > Caching",
    )
    answer = ExtractiveAnswerer().answer("cache the result of an expensive function call", [best, echo])
    assert answer.citations[0].url == "http://d/functools"


def test_two_chunks_of_one_section_get_one_citation_number():
    first = hit(READING, heading="IO > Files", anchor="files")
    second = hit(
        "Call `f.close()` when you are done with a file to free its resources.",
        heading="IO > Files",
        anchor="files",
    )
    answer = ExtractiveAnswerer().answer("read lines of a file and close the file", [first, second])
    assert [c.number for c in answer.citations] == [1]
    assert "[2]" not in answer.text


def test_a_sentence_cut_by_a_chunk_boundary_is_never_quoted_in_pieces():
    cut = (
        "keeping changes in the working tree. Use git reset --soft to undo commits.\n\n"
        "The next chunk stops here, before its"
    )
    units = passage_units(cut)
    assert [u.text for u in units] == ["Use git reset --soft to undo commits."]
    rejoined = passage_units("Reset undoes commits while keeping\n\nchanges in the working tree.")
    assert [u.text for u in rejoined] == ["Reset undoes commits while keeping changes in the working tree."]


def test_a_name_the_question_asks_about_that_no_passage_mentions_is_not_found():
    hits = [hit("Strings grow automatically as text is added. Use g_string_append() to add text.")]
    answer = ExtractiveAnswerer().answer("base64 encode some bytes with glib", hits)
    assert not answer.found and answer.citations[0].url == "http://d/page"


def test_a_follow_up_is_answered_with_the_earlier_question_in_mind():
    venv = hit(
        "Activate the environment with source .venv/bin/activate. To leave it, type deactivate.",
        heading="Virtual Environments",
    )
    conversation = Conversation(
        id="c", turns=[Turn(role="user", text="how do I activate a virtual environment")]
    )
    answer = ExtractiveAnswerer().answer("and how do I leave it?", [venv], conversation)
    assert answer.found and "deactivate" in answer.text


def test_a_new_topic_in_the_same_conversation_is_answered_without_the_earlier_question():
    builder = hit(
        "EnvBuilder creates the virtual environment in a directory, with the options it was given.",
        url="http://d/venv",
        heading="venv > API",
    )
    classes = hit(
        "A class constructor is the method named __init__, called when the class creates an instance.",
        url="http://d/classes",
        heading="Classes > Class Objects",
    )
    conversation = Conversation(
        id="c", turns=[Turn(role="user", text="how do I create a virtual environment in a directory")]
    )
    answer = ExtractiveAnswerer().answer("write a class with a constructor", [classes, builder], conversation)
    assert answer.text.startswith("**Input and Output › Classes › Class Objects**"), answer.text
    assert "EnvBuilder" not in answer.text


def test_the_intro_names_the_page_then_the_sections():
    assert section_label(
        hit("x", title="Quickstart — Flask Documentation", heading="Quickstart > Debug Mode")
    ) == ("Quickstart › Debug Mode")
    assert section_label(hit("x", title="Flask Patterns — Flask", heading="")) == "Flask Patterns"
    assert section_label(hit("x", title="Chapter 3 — Debian", heading="Init > Systemd > Units > Timers")) == (
        "Chapter 3 › Units › Timers"
    )


def test_three_looks_into_one_section_over_two_passages_make_one_quote():
    heading = "Configuration > Files"
    first = hit(
        "Configuration can live in a file. Load the file with from_pyfile.\n\n"
        "Keep the file outside the package. The file path may be relative.",
        heading=heading,
    )
    other = hit("A file may also be loaded from an environment variable naming the file.", heading=heading)
    answer = ExtractiveAnswerer().answer("load configuration from a file", [first, other, first])
    assert answer.found and [c.number for c in answer.citations] == [1]
    assert answer.text.count("Configuration › Files**") == 1


class _TopicEmbedder:
    """Pure-logic stand-in for the local embedder: a text's vector is which of two topics it is about."""

    dim = 2

    def embed(self, texts):
        return [[1.0, 0.0] if "reconfigure" in t or "timezone" in t else [0.0, 1.0] for t in texts]


def test_with_an_embedder_the_quote_that_means_what_was_asked_wins_over_one_that_shares_words():
    shares_words = hit(
        "The clock of a server drifts; a server clock is read by the date command on every server.",
        url="http://d/clock",
        heading="Clock",
    )
    means_it = hit(
        "A wrong timezone is fixed by the following.\n\n```\n# dpkg-reconfigure tzdata\n```",
        url="http://d/tz",
        heading="Zones",
    )
    question = "the clock on my server is off, i think the timezone is wrong"
    lexical = ExtractiveAnswerer().answer(question, [shares_words, means_it])
    semantic = ExtractiveAnswerer(embedder=_TopicEmbedder()).answer(question, [shares_words, means_it])
    assert lexical.citations[0].url == "http://d/clock"
    assert semantic.citations[0].url == "http://d/tz"
    assert "dpkg-reconfigure tzdata" in semantic.text.split("\n\n")[0]


class _RecordingTopicEmbedder(_TopicEmbedder):
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        return super().embed(texts)


def test_quotes_that_read_alike_are_embedded_once_and_weighed_as_before():
    text = "A wrong timezone is fixed by the following.\n\n```\n# dpkg-reconfigure tzdata\n```"
    copies = [
        hit(text, url=f"http://d/tz{n}", title="Time", heading="Zones") for n in range(3)
    ]  # a manual's copies
    other = hit("The clock of a server drifts; a server clock is read by the date command.", url="http://d/c")
    question = "the clock on my server is off, i think the timezone is wrong"
    embedder = _RecordingTopicEmbedder()

    answer = ExtractiveAnswerer(embedder=embedder).answer(question, [other, *copies])

    (texts,) = embedder.calls
    assert len(texts) == len(set(texts)) and len(texts) >= 2  # the question and each distinct quote once
    assert answer.citations[0].url == "http://d/tz0"
    assert "dpkg-reconfigure tzdata" in answer.text.split("\n\n")[0]


def test_an_option_entry_is_quoted_under_its_option_name():
    fresh = "--fresh\n\nThis removes any existing `CMakeCache.txt` file and recreates it from scratch."
    units = passage_units(fresh)
    assert [(u.kind, u.text) for u in units][0] == ("signature", "--fresh")
    synopsis = passage_units("`cmake [<options>] -S <path-to-source> -B <path-to-build>`\n\nUses both paths.")
    assert synopsis[0].kind == "signature" and synopsis[0].text.startswith("cmake [<options>] -S")
    assert passage_units("Warning\n\nDo not do this.")[0].kind == "label"
    passage = hit(fresh, heading="cmake")
    answer = ExtractiveAnswerer().answer("start over and recreate the cmake cache", [passage])
    assert "`--fresh`\nThis removes any existing `CMakeCache.txt` file" in answer.text


def test_a_lone_list_item_of_a_few_words_is_not_a_quote():
    # CMake's tutorial: "Files to Edit" lists only `CMakeLists.txt`: the question's words, and nothing said.
    files = hit("- `CMakeLists.txt`", url="http://d/step1", title="Step 1", heading="Step 1 > Files to Edit")
    subdirectory = hit(
        "Here, we can add a new `CMakeLists.txt` file. In the top level `CMakeLists.txt` file, we will use "
        "the `add_subdirectory()` command to add the subdirectory to the build.",
        url="http://d/step2",
        title="Step 2",
        heading="Step 2 > Creating a Library",
    )
    answer = ExtractiveAnswerer().answer(
        "my lib folder has its own CMakeLists.txt, how do i pull it in", [files, subdirectory]
    )
    assert answer.found
    assert "add_subdirectory()" in answer.text
    assert "Files to Edit" not in answer.text


def test_a_follow_up_about_something_no_passage_holds_is_not_found():
    mouse = hit(
        "SDL_GetMouseState retrieves the current state of the mouse: its x and y position in the window.",
        heading="SDL_mouse.h > SDL_GetMouseState",
        vector=0.62,
    )
    conversation = Conversation(id="c", turns=[Turn(role="user", text="how do i get the mouse position")])
    question = "and how do i read whats on the clipboard"
    strict = ExtractiveAnswerer(tuning=DEFAULT_TUNING.with_values(follow_up_own_coverage=0.5))
    assert not strict.answer(question, [mouse], conversation).found
    assert ExtractiveAnswerer().answer(question, [mouse], conversation).found  # the rule is off by default


def test_a_follow_up_whose_own_words_the_passages_hold_is_answered():
    timer = hit(
        "SDL_RemoveTimer removes a timer created with SDL_AddTimer; the callback is not called again.",
        heading="SDL_timer.h > SDL_RemoveTimer",
    )
    conversation = Conversation(id="c", turns=[Turn(role="user", text="call a function every second")])
    strict = ExtractiveAnswerer(tuning=DEFAULT_TUNING.with_values(follow_up_own_coverage=0.5))
    answer = strict.answer("how do i remove the timer later", [timer], conversation)
    assert answer.found and "SDL_RemoveTimer" in answer.text


def test_settings_come_from_one_object_and_a_wrong_name_says_which_exist():
    strict = ExtractiveAnswerer(tuning=DEFAULT_TUNING.with_values(min_similarity=0.9))
    assert strict.min_similarity == 0.9 and strict.tuning.min_quote_words == DEFAULT_TUNING.min_quote_words
    assert ExtractiveAnswerer(min_similarity=0.2).tuning.min_similarity == 0.2
    try:
        DEFAULT_TUNING.with_values(min_similarty=0.2)
    except ValueError as exc:
        assert "min_similarity" in str(exc)
    else:
        raise AssertionError("a misspelt setting was accepted")


PATTERNS_INDEX = """- Streaming Contents
  - Basic Usage
  - Streaming with Context
- Deferred Request Callbacks
- Celery Background Tasks
  - Install
  - Run a worker
- Subclassing Flask"""

BACKGROUND = (
    "Async functions require an event loop to run. To run work after the response, start a background task "
    "with a task queue and a worker process."
)


def test_a_subject_the_passages_name_only_in_a_table_of_contents_is_not_found():
    index = hit(PATTERNS_INDEX, url="http://d/patterns/", title="Patterns", heading="Patterns for Flask")
    asyncio = hit(BACKGROUND, url="http://d/async", title="Using async", heading="Background tasks")
    answer = ExtractiveAnswerer().answer("how do i set up celery for background jobs", [asyncio, index])
    assert not answer.found  # the index links to the Celery page; the crawl did not hold it


def test_a_subject_a_passage_speaks_of_is_found_even_when_a_table_of_contents_names_it_too():
    index = hit(PATTERNS_INDEX, url="http://d/patterns/", title="Patterns", heading="Patterns for Flask")
    celery = hit(
        "Celery is a task queue. Install it, then create a Celery app that runs tasks in a worker process.",
        url="http://d/patterns/celery",
        title="Celery",
        heading="Celery Background Tasks",
    )
    assert ExtractiveAnswerer().answer("how do i set up celery for background jobs", [index, celery]).found


def test_a_list_of_sentences_or_of_few_items_is_not_a_table_of_contents():
    steps = hit(
        "To use it:\n\n- Install celery with pip.\n- Configure the broker URL.\n- Start a worker.",
        url="http://d/steps",
        heading="Setup",
    )
    assert ExtractiveAnswerer().answer("how do i set up celery", [steps]).found
    short = hit("Tools:\n\n- celery\n- rq", url="http://d/tools", heading="Task queues")
    assert ExtractiveAnswerer().answer("which task queue, celery or rq", [short]).found


def test_an_index_of_title_and_what_it_is_lines_is_a_table_of_contents():
    index = hit(
        "String Utility Functions — various string-related functions\n\n"
        "Base64 Encoding — encodes and decodes data in Base64 format\n\n"
        "Data Checksums — computes the checksum for data\n\n"
        "Hook Functions — support for manipulating lists of hook functions\n\n"
        "Secure HMAC Digests — computes the HMAC for data.",
        url="http://d/glib-utilities.html",
        heading="GLib Utilities",
    )
    strings = hit("Use g_string_append() to add text to a GString; it grows as needed.", url="http://d/s")
    assert not ExtractiveAnswerer().answer("base64 encode some bytes with glib", [index, strings]).found
    assert not ExtractiveAnswerer().answer("how do i compute a checksum of some data", [strings, index]).found
    assert ExtractiveAnswerer().answer("append text to a GString", [strings, index]).found


def test_a_list_of_phrases_or_what_an_entry_says_of_its_page_is_no_table_of_contents_evidence():
    causes = hit(
        "Errors happen:\n\n- your app crashed\n- a harddrive crashed\n- the database went away\n"
        "- the disk filled",
        url="http://d/errors",
        heading="Error Logging",
    )
    email = hit("Send an email to the admins on errors with an SMTPHandler.", url="http://d/logging")
    assert ExtractiveAnswerer().answer("get an email whenever my app crashes", [email, causes]).found
    library = hit(
        "- `urllib.request` — Extensible library for opening URLs\n- `http.client` — HTTP protocol client\n"
        "- `ftplib` — FTP protocol client",
        url="http://d/library/",
        heading="The Python Standard Library",
    )
    forbidden = hit("HTTPError is raised for a status code such as 403 Forbidden.", url="http://d/urllib")
    answer = ExtractiveAnswerer().answer("urllib 403 but the page opens in a browser", [forbidden, library])
    assert answer.found


SAMPLE = (
    "Return a list of unique elements chosen from the population list. Used for random sampling of a list "
    "without replacement, so every member of the population is picked at most once."
)
CHOICE = "Return a random element from the non-empty sequence seq."


def test_the_opening_features_read_each_quote_and_its_passage_in_the_answerers_terms():
    sample = hit(SAMPLE, url="http://d/random", heading="random > sample")
    choice = hit(CHOICE, url="http://d/random", heading="random > choice")
    windows = [(1.0, 0, passage_units(SAMPLE)), (0.5, 1, passage_units(CHOICE))]
    rows = opening_features("pick a random element from a list", windows, [1.0, 0.8], [sample, choice], False)
    named = [dict(zip(OPENING_FEATURES, row, strict=True)) for row in rows]
    assert [n["score"] for n in named] == [1.0, 0.5] and [n["meaning"] for n in named] == [1.0, 0.8]
    assert [n["rank"] for n in named] == [0.0, 0.5] and [n["top_page"] for n in named] == [1.0, 1.0]
    assert named[1]["phrase"] == 1 / 3  # "random element" of the question's three pairs, in that order
    assert named[0]["phrase"] == 0.0  # the same words, never side by side
    assert named[0]["covered"] == 1.0 and named[1]["covered"] == 0.5  # of pick, random, element, list
    assert all(0.0 <= value <= 1.0 for row in rows for value in row)


def test_learned_opening_weights_choose_the_quote_that_opens_the_answer():
    # Given weights that read only the question's phrases, the entry that says "random element" opens the
    # answer, though the other shares more of the question's words.
    sample = hit(SAMPLE, url="http://d/random", heading="random > sample", anchor="sample")
    choice = hit(CHOICE, url="http://d/random", heading="random > choice", anchor="choice")
    question = "pick a random element from a list"
    by_hand = ExtractiveAnswerer(tuning=DEFAULT_TUNING.with_values(opening_weights=()))
    assert by_hand.answer(question, [sample, choice]).citations[0].url.endswith("#sample")
    phrases = tuple(1.0 if name == "phrase" else 0.0 for name in OPENING_FEATURES)
    learned = ExtractiveAnswerer(tuning=DEFAULT_TUNING.with_values(opening_weights=phrases))
    answer = learned.answer(question, [sample, choice])
    assert answer.citations[0].url.endswith("#choice")
    assert answer.text.split("\n")[1].startswith("Return a random element")


def test_opening_weights_of_the_wrong_length_are_refused_when_the_answerer_is_built():
    try:
        ExtractiveAnswerer(tuning=DEFAULT_TUNING.with_values(opening_weights=(1.0, 2.0)))
    except ValueError as exc:
        assert "phrase" in str(exc)
    else:
        raise AssertionError("two weights for fifteen features were accepted")


def test_a_short_code_block_alone_in_its_passage_is_quoted_under_its_section_when_allowed():
    # Given a synopsis: a code block with no sentence before it in its passage
    synopsis = "```\ninstall(TARGETS <target>... [...])\ninstall(FILES <file>... [...])\n```"
    hits = [hit(synopsis, url="http://d/install", title="install", heading="install > Synopsis")]
    question = "how do i install my targets"
    # When a code block alone is never a quote (today's rule), nothing is quoted
    today = DEFAULT_TUNING.with_values(lone_code_lines=0)
    assert ExtractiveAnswerer(tuning=today)._quotes(question, hits) == []
    # Then with short lone code blocks allowed, the synopsis is the quote, whole
    tuning = DEFAULT_TUNING.with_values(lone_code_lines=10)
    quotes = ExtractiveAnswerer(tuning=tuning)._quotes(question, hits)
    assert [u.kind for u in quotes[0].units] == ["code"]
    answer = ExtractiveAnswerer(tuning=tuning).answer(question, hits)
    assert "install(TARGETS" in answer.text and answer.text.startswith("**install › Synopsis**")
    # And a code block longer than the setting stays out
    long = DEFAULT_TUNING.with_values(lone_code_lines=1)
    assert ExtractiveAnswerer(tuning=long)._quotes(question, hits) == []


def test_a_short_code_block_right_after_the_quoted_sentence_joins_it_when_allowed():
    # Given a sentence about the session and the short example after it, and a question that is no how-to
    text = (
        "The session remembers the logged in user between requests.\n\n"
        '```python\nsession["user_id"] = user.id\n```'
    )
    hits = [hit(text, url="http://d/sessions", heading="Sessions")]
    question = "remember the logged in user between requests"
    # When only a how-to takes the code after its sentence, the example is left out
    today = DEFAULT_TUNING.with_values(follow_code_lines=0)
    assert "session[" not in ExtractiveAnswerer(tuning=today).answer(question, hits).text
    # Then with short code blocks following their sentence whatever the question, it is quoted
    tuning = DEFAULT_TUNING.with_values(follow_code_lines=5)
    assert 'session["user_id"]' in ExtractiveAnswerer(tuning=tuning).answer(question, hits).text
