"""The readers of other formats a docs site links to: PDF, Markdown, reStructuredText, plain text, on real
files Debian ships and on hostile ones."""

from __future__ import annotations

import io
import time

import pytest
from pypdf import PdfWriter

from ragcord.errors import ExtractionFailed, NotHtml
from ragcord.knowledge.chunking import chunk_sections
from tests.formatkit import (
    MARKDOWN_README,
    PDF_SPEC,
    RST_README,
    TEXT_FILE,
    debian_file,
    nested_pdf,
    page_count_bomb,
    stream_bomb,
    text_pdf,
)
from workers.crawler import FetchedPage, extract
from workers.extraction.formats import Format, ReadLimits, page_format, read_page
from workers.extraction.markdown import github_slug
from workers.extraction.rst import docutils_id

LIMITS = ReadLimits()


def read(body: bytes | str, url: str, content_type: str, limits: ReadLimits = LIMITS):
    data = body.encode() if isinstance(body, str) else body
    return read_page(data, url, content_type=content_type, charset=None, limits=limits)


# -- which format


@pytest.mark.parametrize(
    ("content_type", "url", "expected"),
    [
        ("text/html", "http://d.test/a.md", Format.HTML),
        ("application/pdf", "http://d.test/manual", Format.PDF),
        ("application/octet-stream", "http://d.test/files/Manual.PDF", Format.PDF),
        ("text/markdown", "http://d.test/notes", Format.MARKDOWN),
        ("text/plain", "https://raw.githubusercontent.com/o/r/main/README.md", Format.MARKDOWN),
        ("text/plain", "http://d.test/docs/guide.markdown", Format.MARKDOWN),
        ("text/x-rst", "http://d.test/notes", Format.RST),
        ("text/plain", "http://d.test/docs/index.rst", Format.RST),
        ("text/plain", "http://d.test/CHANGES.txt", Format.TEXT),
        ("text/plain", "http://d.test/LICENSE", Format.TEXT),
    ],
)
def test_the_format_comes_from_the_content_type_then_the_file_suffix(content_type, url, expected):
    assert page_format(content_type, url) is expected


@pytest.mark.parametrize(
    ("content_type", "url", "reason"),
    [
        ("image/png", "http://d.test/logo.png", "not a page type ragcord reads (image/png"),
        ("application/octet-stream", "http://d.test/data.bin", "(application/octet-stream"),
        ("", "http://d.test/x", "(no content type"),
        ("text/plain", "http://d.test/_sources/api.rst.txt", "a Sphinx page's source text"),
    ],
)
def test_other_types_are_not_read_and_say_why(content_type, url, reason):
    with pytest.raises(NotHtml, match=None) as info:
        page_format(content_type, url)
    assert reason in str(info.value)


# -- PDF


def test_a_real_pdf_reads_as_one_section_per_page_anchored_at_the_page():
    path = debian_file(*PDF_SPEC)
    page = extract(
        FetchedPage("u", "http://d.test/spec.pdf", 200, "application/pdf", path.read_bytes(), None)
    )
    assert page.title == "Shared MIME-info Database"  # the first line: its metadata title is empty
    assert [s.heading_path for s in page.sections][:3] == [("Page 1",), ("Page 2",), ("Page 3",)]
    assert [s.anchor for s in page.sections][:3] == ["page=1", "page=2", "page=3"]
    assert len(page.sections) == 17 and not page.notes
    second = page.sections[1].text
    assert "A standard way of getting the MIME type for a file." in second
    assert "- A standard way for applications" in second  # bullets are list lines
    # The running header of every page is gone; the lines of a paragraph are one line again.
    assert "Shared MIME-info Database" not in second
    assert "In discussions about the previous systems used by GNOME, KDE and ROX (see" in second
    chunks = chunk_sections(page.sections)
    assert {c.anchor for c in chunks} == {f"page={n}" for n in range(1, 18)}


def test_a_pdf_gives_its_title_and_its_web_links():
    pdf = text_pdf(
        [["Quillstack manual", "Workers pull tasks from the queue."], ["Retries back off exponentially."]],
        title="Quillstack Manual",
        link="https://quill.test/docs/",
    )
    page = read(pdf, "http://d.test/manual.pdf", "application/pdf")
    assert page.title == "Quillstack Manual"
    assert page.links == ["https://quill.test/docs/"]
    assert page.sections[1].text == "Retries back off exponentially."


def test_a_pdf_past_the_page_cap_is_read_up_to_it_and_says_so():
    page = read(
        page_count_bomb(40_000), "http://d.test/bomb.pdf", "application/pdf", ReadLimits(max_pdf_pages=5)
    )
    assert len(page.sections) == 5
    assert page.notes == ("only the first 5 of 40000 pages are read",)


def test_a_page_tree_too_large_for_its_limit_is_refused():
    with pytest.raises(ExtractionFailed, match="the PDF cannot be read: LimitReachedError"):
        read(page_count_bomb(200_000), "http://d.test/bomb.pdf", "application/pdf")


def test_a_deflate_bomb_inside_a_pdf_stops_at_its_limit():
    started = time.monotonic()
    page = read(stream_bomb(200_000_000), "http://d.test/bomb.pdf", "application/pdf")
    assert page.sections == [] and "Limit reached while decompressing" in page.notes[0]
    assert time.monotonic() - started < 30  # not a timing assertion of speed: it did not inflate 200 MB+


def test_pdfs_that_cannot_be_read_say_why():
    not_pdf = b"<!doctype html><title>Sign in</title>"
    with pytest.raises(ExtractionFailed, match="served as a PDF but is not one"):
        read(not_pdf, "http://d.test/x.pdf", "application/pdf")
    with pytest.raises(ExtractionFailed, match="the PDF cannot be read"):
        read(text_pdf([["some text"]])[:300], "http://d.test/cut.pdf", "application/pdf")
    with pytest.raises(ExtractionFailed, match="cannot be read|nested too deeply"):
        read(nested_pdf(100_000), "http://d.test/deep.pdf", "application/pdf")
    blank = read(text_pdf([[]]), "http://d.test/blank.pdf", "application/pdf")
    assert blank.sections == [] and blank.notes == (
        "the PDF has no text (1 page read: scanned images or drawings?)",
    )


def test_an_encrypted_pdf_is_read_when_it_needs_no_password_and_refused_when_it_does():
    locked, open_ = io.BytesIO(), io.BytesIO()
    writer = PdfWriter()
    writer.append(io.BytesIO(text_pdf([["Protected text."]])))
    writer.encrypt("secret", algorithm="RC4-128")
    writer.write(locked)
    writer = PdfWriter()
    writer.append(io.BytesIO(text_pdf([["Printing restricted, reading allowed."]])))
    writer.encrypt("", owner_password="owner", algorithm="RC4-128")
    writer.write(open_)
    with pytest.raises(ExtractionFailed, match="encrypted with a password"):
        read(locked.getvalue(), "http://d.test/locked.pdf", "application/pdf")
    assert "reading allowed" in read(open_.getvalue(), "http://d.test/o.pdf", "application/pdf").text


# -- Markdown


def test_a_real_markdown_readme_reads_as_sections_with_githubs_anchors():
    path = debian_file(*MARKDOWN_README)
    page = read(
        path.read_bytes(),
        "https://raw.githubusercontent.com/httplib2/httplib2/master/README.md",
        "text/plain",
    )
    assert page.title == "Introduction"
    headings = {s.heading_path[-1]: s for s in page.sections}
    assert headings["HTTP and HTTPS"].anchor == "http-and-https"
    assert headings["HTTP and HTTPS"].heading_path == ("Introduction", "HTTP and HTTPS")
    assert "- Digest\n- Basic\n- WSSE" in headings["Authentication"].text
    assert '```python\nimport httplib2\nh = httplib2.Http(".cache")\n' in page.text


def test_markdown_fences_tables_lists_links_and_anchors():
    source = """# Quillstack

Intro with a [relative link](docs/guide.md), an [absolute one](https://quill.test/x) and `inline code`.

## Install & run!

```python
import quill
quill.run()
```

| setting | default |
|---|---|
| `retries` | 3 |

1. first
2. second
   - nested *item*

## Install & run!

<p align="center"><a href="CONTRIBUTING.md">Contributing</a></p>
"""
    page = read(source, "https://raw.githubusercontent.com/o/r/main/README.md", "text/markdown")
    assert page.title == "Quillstack"
    assert [(s.heading_path, s.anchor) for s in page.sections] == [
        (("Quillstack",), "quillstack"),
        (("Quillstack", "Install & run!"), "install--run"),
        (("Quillstack", "Install & run!"), "install--run-1"),
    ]
    first, second, third = (s.text for s in page.sections)
    assert first == "Intro with a relative link, an absolute one and `inline code`."
    assert "```python\nimport quill\nquill.run()\n```" in second
    assert "setting | default\n`retries` | 3" in second
    assert "1. first\n2. second\n  - nested item" in second
    assert third == "Contributing"
    assert page.links == [
        "https://raw.githubusercontent.com/o/r/main/docs/guide.md",
        "https://quill.test/x",
        "https://raw.githubusercontent.com/o/r/main/CONTRIBUTING.md",
    ]


def test_github_slugs():
    seen: dict[str, int] = {}
    assert github_slug("What's new in 3.0?", seen) == "whats-new-in-30"
    assert github_slug("API_reference: `run()`", seen) == "api_reference-run"
    assert github_slug("Café", seen) == "café"
    assert github_slug("What's new in 3.0?", seen) == "whats-new-in-30-1"


def test_hostile_markdown_stays_bounded():
    # 100k nested list markers on one line, 200k opening brackets, 1 MB of emphasis: read, not hung.
    for source in ("- " * 100_000 + "x", "[" * 200_000, "*a " * 350_000, "> " * 50_000 + "deep"):
        started = time.monotonic()
        try:
            page = read(source, "http://d.test/hostile.md", "text/markdown")
        except ExtractionFailed:
            continue
        assert page.sections and time.monotonic() - started < 60
    long = ("A paragraph of the changelog.\n\n" * 100_000).encode()  # 3.2 MB
    page = read(long, "http://d.test/CHANGES.md", "text/markdown", ReadLimits(max_markup_bytes=100_000))
    assert page.notes == ("only the first 100000 bytes are read",)
    assert len(page.text) < 110_000


def test_markdown_past_the_time_budget_keeps_the_rest_as_raw_text():
    source = "\n\n".join(f"Paragraph {n} with a [link](p{n}.md)." for n in range(1000))  # one piece
    page = read(source, "http://d.test/a.md", "text/markdown", ReadLimits(max_seconds=1e-9))
    assert page.notes == ("reading stopped after 1e-09s: the rest is kept as raw text",)
    assert "Paragraph 999 with a [link](p999.md)." in page.text


# -- reStructuredText


def test_a_real_rst_readme_reads_as_sections_with_code_and_links():
    path = debian_file(*RST_README)
    page = read(
        path.read_bytes(), "https://raw.githubusercontent.com/akheron/jansson/master/README.rst", "text/plain"
    )
    assert page.title == "Jansson README"
    sections = {s.heading_path[-1]: s for s in page.sections}
    install = sections["Compilation and Installation"]
    assert install.anchor == "compilation-and-installation"
    assert install.heading_path == ("Jansson README", "Compilation and Installation")
    assert "```bash\ngit clone https://github.com/Microsoft/vcpkg.git\n" in install.text
    assert "```\n$ ./configure\n$ make\n$ make install\n```" in install.text
    assert "autotools commands:" in install.text and "::" not in install.text
    assert "- Simple and intuitive API and data model" in page.sections[0].text
    assert "http://www.digip.org/jansson/" in page.links
    assert ".. image::" not in page.text and "badge" not in page.text


def test_rst_titles_levels_directives_and_inline_markup():
    source = """=========
 Manual
=========

Intro with ``literal``, :func:`quill.run` and a `link <https://quill.test/a>`_.

Workers
=======

.. note:: Workers need Redis.

.. code-block:: python
   :linenos:

   worker = quill.Worker()

Scaling
-------

Run more *processes*::

    quill worker --processes 4

Queues
======

.. image:: logo.png
.. _target: https://quill.test/queues

Queues hold tasks.
"""
    page = read(source, "http://d.test/manual.rst", "text/x-rst")
    assert page.title == "Manual"
    assert [(s.heading_path, s.anchor) for s in page.sections] == [
        (("Manual",), "manual"),
        (("Manual", "Workers"), "workers"),
        (("Manual", "Workers", "Scaling"), "scaling"),
        (("Manual", "Queues"), "queues"),
    ]
    manual, workers, scaling, queues = (s.text for s in page.sections)
    assert manual == "Intro with `literal`, `quill.run` and a link."
    assert workers == "Note: Workers need Redis.\n\n```python\nworker = quill.Worker()\n```"
    assert scaling == "Run more processes:\n\n```\nquill worker --processes 4\n```"
    assert queues == "Queues hold tasks."
    assert page.links == ["https://quill.test/a", "https://quill.test/queues"]
    assert docutils_id("Café & Bar 2.0") == "cafe-bar-2-0"


# -- plain text


def test_a_real_text_file_is_one_section_with_its_paragraphs():
    path = debian_file(*TEXT_FILE)
    page = read(path.read_bytes(), "http://d.test/copyright", "text/plain")
    (section,) = page.sections
    assert section.heading_path == () and section.anchor == ""
    assert page.title == path.read_text().split("\n", 1)[0].strip()
    assert "\n\n" in section.text and "\n\n\n" not in section.text
    assert section.text.split("\n\n")[0] == path.read_text().split("\n\n")[0].rstrip()


def test_text_files_that_cannot_be_read_say_why():
    with pytest.raises(ExtractionFailed, match="empty file"):
        read(b"  \n\n", "http://d.test/a.txt", "text/plain")
    with pytest.raises(ExtractionFailed, match="binary content served as text"):
        read(b"\x00\x01\x02" * 100, "http://d.test/a.txt", "text/plain")
    page = read("x" * 50_000, "http://d.test/a.txt", "text/plain", ReadLimits(max_text_chars=1000))
    assert len(page.text) == 1000 and page.notes == ("only the first 1000 characters of text are kept",)


def test_long_markdown_is_parsed_in_pieces_that_keep_fences_and_references_whole():
    filler = "\n\n".join(f"Paragraph {n} of the changelog, long enough to fill a piece." for n in range(3000))
    code = "```python\n" + "\n\n".join(f"step_{n}()" for n in range(3000)) + "\n```"
    source = f"# Changes\n\nSee [the guide][guide].\n\n{filler}\n\n{code}\n\n[guide]: docs/guide.md\n"
    page = read(source, "http://d.test/CHANGES.md", "text/markdown")
    assert page.links == ["http://d.test/docs/guide.md"]
    (section,) = page.sections
    assert section.text.count("```") == 2 and "step_2999()\n```" in section.text


def test_markdown_front_matter_gives_the_title_and_is_not_read_as_text():
    front = '---\ntitle: "Deploying Quillstack"\nweight: 3\n---\n'
    source = front + "\nRun two workers per host.\n\n## Proxies\n\nTrust them.\n"
    page = read(source, "http://d.test/deploy.md", "text/markdown")
    assert page.title == "Deploying Quillstack"
    assert [(s.heading_path, s.text) for s in page.sections] == [
        ((), "Run two workers per host."),
        (("Proxies",), "Trust them."),
    ]
