"""Page records: what a knowledge base knows of a page, as stored in Redis (no Redis here)."""

from __future__ import annotations

from ragcord.knowledge.pages import PageRecord, page_records_key


def test_a_record_round_trips_and_a_large_one_is_stored_compressed():
    small = PageRecord("http://a/x", "h", etag='"1"', fetched_at=1.0, changed_at=1.0, indexed_at=1.0)
    assert PageRecord.decode(small.encode()) == small and small.encode()[:1] == b"{"
    links = [f"http://a/docs/page-{i}.html" for i in range(500)]
    large = PageRecord("http://a/x", "h", links=links)
    encoded = large.encode()
    assert encoded[:1] == b"z" and len(encoded) < len(str(links)) / 4
    assert PageRecord.decode(encoded) == large


def test_validators_and_the_cluster_hash_tag():
    assert PageRecord("u").validators == {}
    record = PageRecord("u", etag='"v1"', last_modified="Mon, 07 Dec 2026 04:00:00 GMT")
    assert record.validators == {
        "If-None-Match": '"v1"',
        "If-Modified-Since": "Mon, 07 Dec 2026 04:00:00 GMT",
    }
    assert page_records_key("ragcord", "docs") == "ragcord:kb:{docs}:pages"


def test_a_record_written_by_a_newer_version_still_reads():
    assert PageRecord.decode(b'{"url": "u", "content_hash": "h", "future": 1}') == PageRecord("u", "h")
