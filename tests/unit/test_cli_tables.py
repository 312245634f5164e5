"""How the listings and the watch summary read: tables in narrow terminals, pipes, JSON, and reasons."""

from __future__ import annotations

import io
import json

from rich.console import Console

from cli.console import as_json, build_table, tsv
from cli.jobs import JOB_COLUMNS, group_reasons, progress_counts, reason
from rpc.v1 import admin_pb2
from tests.unit.test_cli import RAGCORD, run

URL = "https://docs.python.org/3/library/functools.html?highlight=lru_cache#functools.lru_cache"
ROWS = [
    ["e2be2b631e164938", "SUCCEEDED", "python-docs", URL, "39", "9", "4", "151", "2026-12-01 08:53:25"],
    ["01aa06d26a0d4dc0", "RUNNING", "docs", "http://127.0.0.1:8000/docs/", "3", "0", "0", "12", "-"],
]


def render(width: int) -> list[str]:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(build_table(JOB_COLUMNS, ROWS, width))
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


def column(lines: list[str], index: int) -> list[str]:
    """The cells of one column, line by line, from the table's body."""
    return [line.split("│")[index + 1].strip() for line in lines if line.startswith("│")]


def test_jobs_at_80_columns_keep_every_kb_and_url_whole_and_drop_the_lesser_columns():
    lines = render(80)
    assert all(len(line) <= 80 for line in lines)
    header = lines[1]
    assert all(name in header for name in ("id", "state", "kb", "url", "done", "chunks"))
    assert "created" not in header and "skipped" not in header
    first_row = column(lines, 3)[:5]
    assert "".join(first_row) == URL  # folded onto five lines, not cut
    assert "".join(column(lines, 2)[:2]) == "python-docs"


def test_jobs_at_100_columns_fold_a_long_url_onto_few_lines():
    lines = render(100)
    url_lines = [cell for cell in column(lines, 3) if cell]
    assert "".join(url_lines).startswith(URL) and len(url_lines) <= 5  # both URLs
    assert "python-docs" in column(lines, 2)


def test_a_pipe_gets_a_header_and_one_tab_separated_line_per_row():
    text = tsv(JOB_COLUMNS[:4], [["a1", "RUNNING", "kb\tname", "http://x/\ny"]])
    assert text == "id\tstate\tkb\turl\na1\tRUNNING\tkb name\thttp://x/ y\n"


def test_json_lists_the_records_with_the_proto_field_names():
    job = admin_pb2.Job(id="a1", knowledge_base="docs", state=admin_pb2.JOB_STATE_RUNNING, pages_done=3)
    [record] = json.loads(as_json([job]))
    assert record["id"] == "a1" and record["knowledge_base"] == "docs"
    assert record["state"] == "JOB_STATE_RUNNING" and record["pages_done"] == "3"  # int64 as in proto3 JSON
    assert record["pages_failed"] == "0"  # unset fields are there too


def test_skips_and_failures_group_by_reason_most_common_first():
    details = (
        ["HTTP 404"] * 12
        + ["disallowed by robots.txt"] * 3
        + [
            "duplicate of http://d/docs/faq.html",
            "duplicate of http://d/docs/install.html",
            "too large (52428800 bytes, limit 5000000)",
        ]
    )
    assert reason("HTTP 500 (after 1 retries)") == "HTTP 500"
    assert group_reasons(details) == (
        "HTTP 404 (12), disallowed by robots.txt (3), duplicate of … (2), too large (1)"
    )
    assert group_reasons(["HTTP 404", "HTTP 410", "HTTP 500"], shown=1) == (
        "HTTP 404 (1), other reasons (2; --verbose lists them)"
    )


def test_the_progress_line_says_the_total_is_what_was_discovered_with_rate_and_eta():
    job = admin_pb2.Job(
        pages_discovered=40, pages_done=10, pages_skipped=1, pages_failed=1, chunks_indexed=96
    )
    job.started_at.FromSeconds(1000)
    assert progress_counts(job, now=1006) == (
        "12/40 discovered · 2.0 pages/s · ETA 14 s · 96 chunks · 1 skipped · 1 failed"
    )
    job.finished_at.FromSeconds(1006)
    assert "ETA" not in progress_counts(job)


def test_the_progress_line_says_what_an_incremental_crawl_changed():
    job = admin_pb2.Job(
        pages_discovered=9,
        pages_done=8,
        pages_failed=1,
        pages_added=1,
        pages_updated=2,
        pages_unchanged=4,
        pages_removed=1,
        chunks_indexed=7,
    )
    assert progress_counts(job) == (
        "9/9 discovered · 7 chunks · 1 added · 2 updated · 4 unchanged · 1 removed · 1 failed"
    )


def test_listing_commands_offer_json_and_watch_offers_verbose():
    for command, option in [
        ("jobs", "--json"),
        ("sources", "--json"),
        ("kbs", "--json"),
        ("watch", "--verbose"),
    ]:
        result = run(RAGCORD, command, "--help")
        assert result.returncode == 0 and option in result.stdout, result.stdout
