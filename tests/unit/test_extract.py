from __future__ import annotations

import pytest

from ragcord.errors import ExtractionFailed
from workers.crawler import FetchedPage, extract

PROSE = ("Quillstack workers pull tasks from the queue and run them with retries. " * 8).strip()


def page(body: bytes | str, url: str = "http://d.example/docs/guide/page.html", charset: str | None = None):
    data = body.encode() if isinstance(body, str) else body
    return FetchedPage(url, url, 200, "text/html", data, charset)


def test_extracts_title_markdown_and_normalised_links():
    html = f"""<html><head><title>Workers — Quillstack</title></head><body>
      <nav><a href="../index.html">Home</a><a href="retries.html#top">Retries</a>
      <a href="/docs/guide/retries.html">again</a><a href="mailto:x@y">mail</a><a href="#frag">here</a>
      <a href="HTTP://D.EXAMPLE:80/blog/">Blog</a></nav>
      <main><h1>Workers</h1><p>{PROSE}</p><h2>Scaling</h2><p>{PROSE}</p></main></body></html>"""
    extracted = extract(page(html))
    assert extracted.title == "Workers — Quillstack"
    assert "# Workers" in extracted.markdown and "## Scaling" in extracted.markdown
    assert extracted.links == [
        "http://d.example/docs/",
        "http://d.example/docs/guide/retries.html",
        "http://d.example/blog/",
    ]


def test_non_utf8_bytes_without_a_charset_are_read_not_dropped():
    html = (
        f"<html><head><title>Caf\xe9</title></head><body><main><p>Men\xfc \u201cgr\xfc\xdfe\u201d {PROSE}</p>"
        "</main></body></html>"
    )
    extracted = extract(page(html.encode("cp1252")))
    assert extracted.title == "Café"
    assert "Menü “grüße”" in extracted.markdown


def test_the_declared_charset_wins():
    html = f"<html><body><main><p>\xfcber {PROSE}</p></main></body></html>"
    assert "über" in extract(page(html.encode("latin-1"), charset="iso-8859-1")).markdown


def test_malformed_html_still_yields_its_text():
    html = f"<html><body><div><main><p>{PROSE}<div></span></div></div></p><p>Tail text here. <p"
    extracted = extract(page(html))
    assert "Quillstack workers pull tasks" in extracted.markdown


def test_an_empty_or_binary_body_fails_with_the_reason():
    with pytest.raises(ExtractionFailed, match="empty page"):
        extract(page(b""))
    with pytest.raises(ExtractionFailed, match="binary content"):
        extract(page(b"\x00\x01\x02\xff" * 100))


def test_base_href_is_honoured():
    html = (
        f'<html><head><base href="/docs/v2/"></head><body><a href="a.html">A</a><p>{PROSE}</p></body></html>'
    )
    assert extract(page(html)).links == ["http://d.example/docs/v2/a.html"]
