"""The matrix's own tools: the independent link walk and the loopback server."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.realsites.reach import own_titles, reach
from tests.realsites.server import DocSite


def _write(root: Path, path: str, body: str) -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(body)


def test_the_walk_counts_linked_pages_in_scope_only(tmp_path):
    site = tmp_path / "site"
    _write(
        site, "docs/index.html", '<a href="a.html#x">a</a> <a href="sub/">sub</a> <a href="../out.html">o</a>'
    )
    _write(
        site, "docs/a.html", '<a href="index.html">i</a> <a href="gone.html">g</a> <a href="notes.txt">t</a>'
    )
    _write(site, "docs/sub/index.html", '<a href="/docs/a.html?q=1">a</a> <a href="http://else/x.html">x</a>')
    _write(site, "docs/notes.txt", "plain")
    _write(site, "docs/orphan.html", "never linked")
    _write(site, "out.html", "outside the seed's directory")

    found = reach(site, "/docs/index.html")

    assert found.pages == {"/docs/index.html": 0, "/docs/a.html": 1, "/docs/sub/index.html": 1}
    assert found.missing == {"/docs/gone.html"}
    assert found.other_files == {"/docs/notes.txt"}
    assert found.link_targets == 5


def test_the_walk_reads_xhtml_with_an_xml_declaration_and_honours_patterns(tmp_path):
    xhtml = '<?xml version="1.0" encoding="UTF-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><body>{}</body></html>'
    _write(tmp_path, "index.html", xhtml.format('<a href="ch1.html">1</a><a href="_sources/x.txt">s</a>'))
    _write(tmp_path, "ch1.html", xhtml.format("<title>Chapter 1. Start</title><h1>Chapter 1. Start</h1>"))

    found = reach(tmp_path, "/index.html", exclude=(r"^/_sources/",))

    assert set(found.pages) == {"/index.html", "/ch1.html"}
    assert own_titles((tmp_path / "ch1.html").read_bytes()) == ["Chapter 1. Start", "Chapter 1. Start"]


def test_the_server_follows_symlinks_out_of_its_root(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    _write(elsewhere, "manual.html", "<title>Manual</title>")
    _write(tmp_path, "root/page.xhtml", "<html/>")
    (tmp_path / "root" / "manual.html").symlink_to(elsewhere / "manual.html")

    with DocSite(tmp_path / "root") as web:
        manual = httpx.get(web.url("/manual.html"))
        page = httpx.get(web.url("/page.xhtml"))
        listing = httpx.get(web.url("/"))

    assert manual.status_code == 200 and manual.text == "<title>Manual</title>"
    assert page.headers["content-type"].startswith("application/xhtml+xml")
    assert listing.status_code == 404  # no directory listings
