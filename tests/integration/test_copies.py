"""The chunk-owner index keeps whole-manual copies out, whichever page a crawl reaches first (real Redis)."""

from __future__ import annotations

import pytest

from ragcord.knowledge.copies import CopyIndex, fingerprint


def section(name: str, n: int) -> list[str]:
    """`n` distinct paragraphs of a section page, each long enough to be compared."""
    return [
        f"The {name} command number {i} reads the configuration file, checks every option it finds and "
        f"writes a report of what changed to the standard output of the {name} tool."
        for i in range(n)
    ]


@pytest.fixture
def copies(redis_client, key_prefix):
    return CopyIndex(redis_client, prefix=key_prefix)


def claim(copies: CopyIndex, url: str, texts: list[str]):
    return copies.claim("job1", url, texts, list(range(len(texts))))


def test_short_texts_are_never_compared():
    assert fingerprint("See also") is None
    assert fingerprint(section("x", 1)[0]) == fingerprint(section("x", 1)[0].upper().replace(",", " ;"))


def test_a_whole_manual_crawled_after_its_sections_is_skipped(copies):
    install, usage = section("install", 3), section("usage", 4)
    assert claim(copies, "http://d/install.html", install).keep == [0, 1, 2]
    assert claim(copies, "http://d/usage.html", usage).keep == [0, 1, 2, 3]

    verdict = claim(copies, "http://d/print.html", ["Manual", *install, *usage])

    assert verdict.skip
    assert verdict.copies == ["http://d/usage.html", "http://d/install.html"]
    assert verdict.taken == {}


def test_sections_crawled_after_the_whole_manual_take_their_chunks_back(copies):
    install, usage = section("install", 3), section("usage", 4)
    whole = [*install, *usage, *section("extra", 1)]
    assert claim(copies, "http://d/print.html", whole).keep == list(range(8))

    first = claim(copies, "http://d/install.html", install)
    second = claim(copies, "http://d/usage.html", usage)

    assert first.keep == [0, 1, 2] and first.taken == {"http://d/print.html": [0, 1, 2]}
    assert second.keep == [0, 1, 2, 3] and second.taken == {"http://d/print.html": [3, 4, 5, 6]}
    # The manual, crawled again (a redelivery), keeps only what no section page has.
    again = claim(copies, "http://d/print.html", whole)
    assert again.keep == [7] and set(again.copies) == {"http://d/install.html", "http://d/usage.html"}


def test_the_second_of_two_equal_copies_is_left_out(copies):
    spec = section("spec", 5)
    assert claim(copies, "http://d/go_spec.html", spec).keep == list(range(5))
    older = claim(
        copies,
        "http://d/go1.17_spec.html",
        [*spec[:4], "A paragraph that only the old edition has, long enough to be compared with the others."],
    )
    assert older.keep == [4]
    assert older.left_out == 4 and older.copies == ["http://d/go_spec.html"]


def test_a_page_redelivered_keeps_its_own_chunks(copies):
    texts = section("retry", 3)
    claim(copies, "http://d/retry.html", texts)
    assert claim(copies, "http://d/retry.html", texts).keep == [0, 1, 2]


def test_pages_sharing_a_short_note_are_both_indexed(copies):
    a = ["Note", *section("alpha", 2)]
    b = ["Note", *section("beta", 2)]
    assert claim(copies, "http://d/a.html", a).keep == [0, 1, 2]
    assert claim(copies, "http://d/b.html", b).keep == [0, 1, 2]


def test_the_index_expires_with_the_crawl(copies, redis_client):
    claim(copies, "http://d/a.html", section("a", 2))
    for key in copies.keys("job1"):
        assert 0 < redis_client.ttl(key) <= copies.ttl_seconds


def test_a_copy_written_after_a_section_took_its_chunks_finds_them_lost(copies):
    install = section("install", 2)
    whole = [*install, *section("extra", 3)]
    claim(copies, "http://d/print.html", whole)  # the copy claims first, then is slow to embed and write
    assert claim(copies, "http://d/install.html", install).taken  # the section takes its chunks back

    assert copies.lost("job1", "http://d/print.html", whole, list(range(5))) == [0, 1]
    assert copies.lost("job1", "http://d/install.html", install, [0, 1]) == []
