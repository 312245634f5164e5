"""A site that publishes its manual twice (section pages and one print page) is indexed once: the sections.

Real worker, Redis and LanceDB; the site is served on loopback. Whichever page the crawl reaches first,
the print page ends up holding none of the sections' text and answers cite the section pages.
"""

from __future__ import annotations

import pytest

from ragcord.bootstrap import bootstrap
from ragcord.jobs import JobState
from tests.harness import crawl
from tests.sitekit import FixtureSite, html_page

SECTIONS = {
    "install": [
        "Download the installer for your platform and run it with administrator rights to install Quarkle.",
        "The installer puts the quarkle command on your path and creates a default configuration file.",
    ],
    "upgrade": [
        "Stop every running Quarkle service before you upgrade, then run quarkle migrate to move your data.",
        "An upgrade never deletes a project; the previous version stays in the backup folder for a week.",
    ],
}
EXTRA = "The printable edition also has this colophon paragraph that no section page repeats anywhere at all."


def section_body(name: str, level: int) -> str:
    paragraphs = "".join(f"<p>{text}</p>" for text in SECTIONS[name])
    return f'<section id="{name}"><h{level}>{name.title()}</h{level}>{paragraphs}</section>'


def write_site(root, *, print_first: bool) -> None:
    docs = root / "docs"
    docs.mkdir(parents=True)
    links = ["install.html", "upgrade.html"]
    links = ["print.html", *links] if print_first else [*links, "print.html"]
    nav = "".join(f'<li><a href="{link}">{link}</a></li>' for link in links)
    intro = "<p>Quarkle keeps your projects in sync across machines; this manual explains how to run it.</p>"
    index = f"<h1>Quarkle manual</h1>{intro}<ul>{nav}</ul>"
    (docs / "index.html").write_text(html_page("Quarkle manual", index))
    for name in SECTIONS:
        (docs / f"{name}.html").write_text(html_page(name.title(), section_body(name, 1)))
    whole = "".join(section_body(name, 2) for name in SECTIONS) + f"<h2>Colophon</h2><p>{EXTRA}</p>"
    (docs / "print.html").write_text(html_page("Quarkle manual (print)", f"<h1>Whole manual</h1>{whole}"))


@pytest.mark.parametrize("print_first", [True, False], ids=["print-page-first", "sections-first"])
def test_the_print_edition_keeps_none_of_the_sections_text(make_settings, tmp_path, print_first):
    write_site(tmp_path / "site", print_first=print_first)
    settings = make_settings()
    services = bootstrap(settings)
    with FixtureSite(root=tmp_path / "site") as site:
        job = crawl(settings, services, site.url("/docs/"), "docs", max_pages=20)

    assert job.state is JobState.SUCCEEDED, job.error
    sources = {s.url: s for s in services.store.list_sources("docs")}
    for name, paragraphs in SECTIONS.items():
        page = services.store.get_source("docs", site.url(f"/docs/{name}.html"))
        assert [c.text for c in page.chunks] == ["\n\n".join(paragraphs)]
    print_url = site.url("/docs/print.html")
    if print_url in sources:  # indexed first: only what no section page has is left of it
        assert [c.text for c in services.store.get_source("docs", print_url).chunks] == [EXTRA]
    events = services.jobs.events(job.id)
    detail = next(e.detail for e in events if e.page_url == print_url)
    if not print_first:
        assert detail.startswith("Quarkle manual (print) (2 of 3 chunks repeat"), detail
    hits = services.store.keyword_search("docs", "quarkle migrate upgrade", 5)
    assert hits[0].chunk.url == site.url("/docs/upgrade.html")
    assert all(h.chunk.url != print_url for h in hits)
    services.close()
