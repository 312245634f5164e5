"""Pure logic of knowledge bases' sources, schedules and re-crawl summaries: what a source keeps of a
crawl, intervals as people type them, jitter, the summary."""

from __future__ import annotations

import dataclasses

import pytest

from ragcord.crawls import CrawlSpec, source_of
from ragcord.errors import InvalidArgument
from ragcord.jobs import JobRecord, JobState, RenderMode, SitemapMode
from ragcord.knowledge.records import SourceRecord
from ragcord.schedules import describe_every, jitter_seconds, parse_every
from ragcord.updates import Changes, summary_text


@pytest.mark.parametrize(
    ("text", "seconds"), [("1d", 86400), ("12h", 43200), ("30m", 1800), (" 90 S ", 90), ("off", 0), ("0", 0)]
)
def test_intervals_as_typed(text, seconds):
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["soon", "1w", "-1d", "", "1.5h", "99999999d"])
def test_bad_intervals_say_what_to_type(text):
    with pytest.raises(InvalidArgument, match="use e.g. 1d, 12h, 30m, or off"):
        parse_every(text)


def test_intervals_are_described_in_their_largest_whole_unit():
    assert [describe_every(s) for s in (86400, 43200, 5400, 90, 172800)] == ["1d", "12h", "90m", "90s", "2d"]


def test_jitter_is_fixed_per_knowledge_base_and_bounded():
    assert jitter_seconds("docs", 86400) == jitter_seconds("docs", 86400) < 300
    assert jitter_seconds("docs", 5) == 0 and jitter_seconds("docs", 100) < 10
    assert len({jitter_seconds(f"kb{i}", 86400) for i in range(50)}) > 40


def job(**counts) -> JobRecord:
    return JobRecord(
        id="j",
        knowledge_base="docs",
        url="http://d/",
        state=JobState.SUCCEEDED,
        max_pages=5,
        max_depth=2,
        **counts,
    )


def test_summaries_with_and_without_incremental_counters():
    urls = [f"http://d/{i}" for i in range(10)]
    exact = Changes(
        "docs",
        [job()],
        True,
        updated=2,
        added=1,
        removed=1,
        changed_urls=urls[:3],
        removed_urls=["http://d/gone"],
    )
    assert summary_text(exact) == (
        "📚 Re-crawl of `docs` finished — pages: 2 updated, 1 added, 1 removed.\n"
        "Changed: <http://d/0>, <http://d/1>, <http://d/2>\nRemoved: <http://d/gone>"
    )
    plain = Changes("docs", [job()], False, reindexed=10, failed=1, changed_urls=urls)
    assert summary_text(plain).splitlines() == [
        "📚 Re-crawl of `docs` finished — pages: 10 re-indexed, 0 removed, 1 failed.",
        "Re-indexed: " + ", ".join(f"<{u}>" for u in urls[:8]) + " and 2 more",
    ]
    assert not Changes("docs", [job()], True).anything and plain.anything


@dataclasses.dataclass(frozen=True)
class LaterSpec(CrawlSpec):
    """A crawl option added after this code: sources keep it for re-crawls."""

    later: RenderMode = RenderMode.NEVER  # (any enum: it is kept as its value)


def test_a_source_keeps_every_option_of_its_crawl_through_json():
    spec = LaterSpec(
        "http://d/",
        "docs",
        5,
        2,
        ("/a/",),
        ("/b/",),
        3,
        RenderMode.ALWAYS,
        True,
        SitemapMode.ONLY,
        RenderMode.AUTO,
    )
    source = source_of(spec, "job1")
    again = SourceRecord.from_json(source.to_json())
    assert again == source
    assert (again.url, again.include_patterns, again.max_concurrent_requests, again.render) == (
        "http://d/",
        ["/a/"],
        3,
        "always",
    )
    # `full` was that crawl's one-off choice: its re-crawls stay incremental.
    assert again.options == {"sitemap": "only", "later": "auto"} and again.last_job_id == "job1"


def test_the_bots_progress_line_says_what_a_recrawl_changed():
    from bot.cogs.admin import progress_text

    first = job()
    assert "unchanged" not in progress_text(first) and "(" not in progress_text(first)
    again = dataclasses.replace(first, pages_done=5, pages_unchanged=3, pages_updated=1, pages_removed=1)
    assert progress_text(again).endswith("(1 updated, 3 unchanged, 1 removed)")
