"""The extractive answerer and the model prompt's citations (pure logic)."""

from __future__ import annotations

from ragcord.answering.extractive import NOT_FOUND, ExtractiveAnswerer
from ragcord.answering.prompt import build_messages, map_citations
from ragcord.answering.text import coverage, stem
from ragcord.knowledge.search import Hit
from ragcord.knowledge.stores import StoredChunk
from ragcord.memory import Conversation, Turn

VENV = (
    "A virtual environment keeps a project's packages apart from the system Python. "
    "Create one with python -m venv .venv in the project folder. "
    "Activate it with source .venv/bin/activate on Linux and macOS. "
    "Quillstack supports Python 3.10 and newer."
)
DOCKER = "Quillstack ships an official Docker image. Mount your quillstack.toml at /etc/quillstack/."


def hit(url: str, text: str, *, vector: float | None = 0.6, score: float = 1.0) -> Hit:
    chunk = StoredChunk(
        id=url,
        url=url,
        title=url.rsplit("/", 1)[-1],
        heading="",
        chunk_index=0,
        text=text,
        content_hash="",
        indexed_at=0.0,
    )
    return Hit(chunk=chunk, score=score, vector_score=vector, passage=text)


def test_quotes_the_sentences_that_answer_with_citations():
    answer = ExtractiveAnswerer().answer(
        "How do I activate the virtual environment?",
        [hit("http://d/venv", VENV), hit("http://d/docker", DOCKER)],
    )
    assert answer.found
    assert "Activate it with source .venv/bin/activate on Linux and macOS." in answer.text
    assert answer.text.startswith("**venv**\n")  # the quote is introduced by its page
    quoted, _, linked = answer.text.partition("\n\nSee also ")
    assert quoted.rstrip().endswith("[1]") and linked == "[2]."
    assert answer.citations[0].url == "http://d/venv" and answer.citations[0].number == 1
    assert "Docker" not in answer.text  # nothing quoted from a page that does not answer: only linked


def test_honestly_reports_not_found_with_the_closest_pages():
    hits = [hit("http://d/venv", VENV, vector=0.12), hit("http://d/docker", DOCKER, vector=0.1)]
    answer = ExtractiveAnswerer().answer("What is the capital of France?", hits)
    assert not answer.found
    assert answer.text.startswith(NOT_FOUND)
    assert [c.url for c in answer.citations] == ["http://d/venv", "http://d/docker"]


def test_an_empty_knowledge_base_says_so():
    answer = ExtractiveAnswerer().answer("anything?", [])
    assert not answer.found and "no pages yet" in answer.text and answer.citations == []


def test_keyword_only_mode_decides_on_term_coverage():
    answerer = ExtractiveAnswerer(min_term_coverage=0.6)
    assert answerer.answer("activate virtual environment", [hit("http://d/v", VENV, vector=None)]).found
    assert not answerer.answer("bake sourdough bread", [hit("http://d/v", VENV, vector=None)]).found


def test_text_tools():
    assert stem("retries") == stem("retry") and stem("activating") == stem("activate")
    assert stem("class") == "class" and stem("classes") == "class"  # the hand-made stemmer said "clas"
    assert coverage("activate the environment", VENV) == 1.0


def test_prompt_numbers_passages_and_carries_the_conversation():
    conversation = Conversation(
        id="c",
        summary="They use Linux.",
        turns=[
            Turn(role="user", text="How do I make a venv?"),
            Turn(role="assistant", text="Use python -m venv [1]."),
        ],
    )
    messages = build_messages("and activate it?", [hit("http://d/venv", VENV)], conversation)
    assert messages[0]["role"] == "system" and "[1]" in messages[0]["content"]
    assert "They use Linux." in messages[1]["content"]
    assert [m["content"] for m in messages[2:4]] == ["How do I make a venv?", "Use python -m venv [1]."]
    assert (
        "[1] venv — http://d/venv" in messages[-1]["content"]
        and "Question: and activate it?" in messages[-1]["content"]
    )


def test_citations_map_to_sources_and_unknown_numbers_are_dropped():
    hits = [hit("http://d/venv", VENV), hit("http://d/docker", DOCKER), hit("http://d/venv", VENV)]
    text, citations = map_citations("Use a venv [1]. Docker works [2, 7]. Again [3][9].", hits)
    assert text == "Use a venv [1]. Docker works [2]. Again [3]."
    assert [(c.number, c.url) for c in citations] == [(1, "http://d/venv"), (2, "http://d/docker")]
