"""Citations that land on the answer: a cited passage's section anchor follows its page URL, one citation
per section, as the extractive and the model answerers build them and as Discord shows them."""

from __future__ import annotations

from bot.render import format_answer, split_message
from ragcord.answering.extractive import ExtractiveAnswerer
from ragcord.answering.prompt import map_citations
from ragcord.answering.types import Answer, Citation, cited_url
from ragcord.knowledge.search import Hit
from ragcord.knowledge.stores import StoredChunk

PAGE = "http://d/config"
PORTS = "The server listens on port 8080 by default. Set port in quillstack.toml to change the port."
MORE_PORTS = "A port below 1024 needs root, so pick a port above it."
LOGGING = "Set log_level to debug to log every request. The log goes to standard error."


def hit(text: str, anchor: str, *, url: str = PAGE, index: int = 0, vector: float = 0.6) -> Hit:
    chunk = StoredChunk(
        id=f"{url}#{index}",
        url=url,
        title="Configuration",
        heading=anchor.title(),
        chunk_index=index,
        text=text,
        content_hash="",
        indexed_at=0.0,
        anchor=anchor,
    )
    return Hit(chunk=chunk, score=1.0 - index / 10, vector_score=vector, passage=text)


def test_the_cited_url_points_at_the_section_and_stays_one_markdown_link():
    assert cited_url(hit(PORTS, "ports")) == "http://d/config#ports"
    assert cited_url(hit(PORTS, "")) == "http://d/config"
    assert cited_url(hit(PORTS, "functools.lru_cache")) == "http://d/config#functools.lru_cache"
    assert cited_url(hit(PORTS, "réglages (avancés)")) == "http://d/config#r%C3%A9glages%20%28avanc%C3%A9s%29"
    # A hash-routed page (Docsify's `#/config`) is the page: a section anchor would replace its route.
    assert cited_url(hit(PORTS, "ports", url="http://d/#/config")) == "http://d/#/config"


def test_an_extractive_answer_cites_the_section_it_quotes():
    answer = ExtractiveAnswerer().answer(
        "Which port does the server listen on?", [hit(PORTS, "ports"), hit(LOGGING, "logging", index=1)]
    )

    assert answer.found and "port 8080" in answer.text
    # The quoted section first; the search's next section, nearly as strong and of the only page it found,
    # is linked after it ("See also").
    assert [(c.number, c.url, c.page_url) for c in answer.citations] == [
        (1, "http://d/config#ports", "http://d/config"),
        (2, "http://d/config#logging", "http://d/config"),
    ]
    assert answer.text.endswith("See also [2].")


def test_other_pages_come_before_other_sections_of_a_cited_page_in_see_also():
    hits = [
        hit(PORTS, "ports"),
        hit(LOGGING, "logging", index=1),
        hit(LOGGING, "levels", url="http://d/logging", index=2),
    ]
    answer = ExtractiveAnswerer(max_citations=2).answer("Which port does the server listen on?", hits)

    assert [c.url for c in answer.citations] == ["http://d/config#ports", "http://d/logging#levels"]


def test_two_sections_of_one_page_are_two_citations_and_one_section_is_one():
    hits = [hit(PORTS, "ports"), hit(LOGGING, "logging", index=3), hit(MORE_PORTS, "ports", index=1)]

    answer = ExtractiveAnswerer(max_words=500).answer(
        "Which port does the server use and how do I set the log level?", hits
    )

    assert answer.found
    urls = [c.url for c in answer.citations]
    assert sorted(urls) == ["http://d/config#logging", "http://d/config#ports"]
    ports = urls.index("http://d/config#ports") + 1
    assert f"{MORE_PORTS} [{ports}]" in answer.text  # the section's second passage shares its number


def test_the_closest_pages_of_a_not_found_answer_are_one_per_page_at_their_best_section():
    hits = [
        hit(PORTS, "ports", vector=0.1),
        hit(LOGGING, "logging", index=1, vector=0.1),
        hit(PORTS, "", url="http://d/other", vector=0.1),
    ]

    answer = ExtractiveAnswerer().answer("What is the capital of France?", hits)

    assert not answer.found
    assert [c.url for c in answer.citations] == ["http://d/config#ports", "http://d/other"]


def test_a_models_citations_are_one_per_section_in_order_of_use():
    hits = [hit(PORTS, "ports"), hit(LOGGING, "logging", index=2), hit(MORE_PORTS, "ports", index=1)]

    text, citations = map_citations("Use port 8080 [1][3]. Logs go to stderr [2].", hits)

    assert text == "Use port 8080 [1][3]. Logs go to stderr [2]."
    assert [(c.number, c.url) for c in citations] == [
        (1, "http://d/config#ports"),
        (2, "http://d/config#logging"),
    ]


def test_discord_shows_the_anchored_link_whole():
    cited = Citation(1, "http://d/config#r%C3%A9glages%20%28avanc%C3%A9s%29", "Configuration", "", 1.0)
    answer = Answer(text="word " * 500, citations=[cited], found=True)

    message = format_answer(answer)

    link = "[1] [Configuration](<http://d/config#r%C3%A9glages%20%28avanc%C3%A9s%29>)"
    assert message.endswith(link)
    assert any(part.endswith(link) for part in split_message(message, 300))
