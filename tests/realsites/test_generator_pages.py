"""The extractor on single pages of each documentation generator (tests/fixtures/generators/): the fast
counterpart of tests/e2e/test_real_sites.py, which crawls the whole sites."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realsites.catalog import SITES
from tests.realsites.reach import own_titles, page_links
from workers.crawler import FetchedPage, extract

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "generators"
PAGES = sorted(p for p in FIXTURES.rglob("*.html"))
CONTENT_TYPES = {"docbook-debian-reference": "application/xhtml+xml"}


def _text(extracted: object) -> str:
    """The page's content as text; `.text` of the sectioned extractor, `.markdown` of the older one."""
    text = getattr(extracted, "text", None)
    return text if isinstance(text, str) else extracted.markdown  # type: ignore[attr-defined]


def _generator(page: Path) -> str:
    return page.relative_to(FIXTURES).parts[0]


def _fetched(page: Path) -> FetchedPage:
    generator = _generator(page)
    url = f"http://docs.test/{page.relative_to(FIXTURES / generator).as_posix()}"
    return FetchedPage(url, url, 200, CONTENT_TYPES.get(generator, "text/html"), page.read_bytes(), None)


@pytest.fixture(params=PAGES, ids=lambda p: p.relative_to(FIXTURES).as_posix())
def page(request) -> Path:
    return request.param


def test_every_generator_has_fixture_pages():
    assert {s.name for s in SITES} == {p.name for p in FIXTURES.iterdir() if p.is_dir()}


def test_the_page_keeps_its_own_title(page):
    extracted = extract(_fetched(page))
    owns = own_titles(page.read_bytes())
    assert owns, "the fixture page names itself"
    assert len(extracted.title) >= 3
    assert any(own in extracted.title or extracted.title in own for own in owns), (extracted.title, owns)
    assert not extracted.title.startswith("http")


def test_the_page_yields_its_text_and_links(page):
    extracted = extract(_fetched(page))
    words = len(_text(extracted).split())
    assert words >= 50, f"only {words} words extracted"
    on_disk = {link for link in page_links(page.read_bytes(), "/" + page.name)}
    if on_disk:
        assert extracted.links, f"the page has {len(on_disk)} links, none extracted"


def test_no_page_furniture_in_the_text(page):
    site = SITES.by_name(_generator(page))
    text = _text(extract(_fetched(page)))
    hits = [p.pattern for p in site.patterns if p.search(text)]
    assert not hits, f"boilerplate kept: {hits}"
