"""An operator's session: `ragcord serve` as a process, driven with the real grpcurl and the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from tests.e2e.conftest import SITE, TOKEN
from tests.e2e.procs import RAGCORD, Grpcurl, GrpcurlError, Service, wait_healthy
from tests.harness import free_port
from tests.sitekit import FixtureSite

pytestmark = pytest.mark.e2e
MANIFEST = json.loads((SITE / "manifest.json").read_text())
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}


def n(job: dict, field: str) -> int:
    return int(job.get(field, 0))  # grpcurl prints int64 as strings and omits zeros


def test_reflection_lists_the_service_without_a_proto(server):
    grpcurl, _, _ = server
    result = grpcurl.run("list", token=None)
    assert result.returncode == 0, result.stderr
    assert "ragcord.admin.v1.AdminService" in result.stdout.split()
    assert "grpc.health.v1.Health" in result.stdout.split()


def test_admin_calls_need_the_token(server):
    grpcurl, _, _ = server
    with pytest.raises(GrpcurlError) as info:
        grpcurl.call("ListJobs", {}, token=None)
    assert info.value.code == "Unauthenticated"
    with pytest.raises(GrpcurlError) as info:
        grpcurl.call("ListJobs", {}, token="wrong")
    assert info.value.code == "Unauthenticated"


def test_crawl_and_watch_with_grpcurl(server, site):
    grpcurl, _, _ = server
    started = time.monotonic()
    (job,) = grpcurl.call(
        "StartCrawl", {"url": site.url("/docs/"), "knowledge_base": "e2e", "max_pages": 200}
    )
    assert job["state"] == "JOB_STATE_QUEUED"

    events = grpcurl.call("WatchJob", {"job_id": job["id"]})
    elapsed = time.monotonic() - started

    assert events[0]["kind"] == "JOB_EVENT_KIND_SNAPSHOT"
    logged = [e for e in events if e.get("event_id")]
    assert [int(e["event_id"]) for e in logged] == list(range(1, len(logged) + 1))
    assert logged[0]["detail"] == "queued"
    terminal = [
        e for e in events if e["kind"] == "JOB_EVENT_KIND_STATE_CHANGED" and e["job"]["state"] in TERMINAL
    ]
    assert len(terminal) == 1 and terminal[0] is events[-1]
    final = events[-1]["job"]
    assert final["state"] == "JOB_STATE_SUCCEEDED"
    assert n(final, "pages_done") + n(final, "pages_skipped") + n(final, "pages_failed") == n(
        final, "pages_discovered"
    )
    indexed = {e["page_url"] for e in events if e["kind"] == "JOB_EVENT_KIND_PAGE_INDEXED"}
    assert n(final, "pages_done") == len(indexed) >= len(MANIFEST["indexable"]) - len(MANIFEST["duplicates"])
    # Incremental crawls (issue 22): a first crawl adds every page it indexes (grpcurl omits zero counters).
    assert n(final, "pages_added") == n(final, "pages_done") and "pages_unchanged" not in final
    for path in MANIFEST["robots_disallowed"] + MANIFEST["out_of_scope"]:
        assert site.hits(path) == 0
    print(
        f"\ncrawl of {n(final, 'pages_discovered')} pages ({len(indexed)} indexed, "
        f"{n(final, 'chunks_indexed')} chunks) with the local embedder: {elapsed:.1f}s, "
        f"{len(indexed) / elapsed:.1f} indexed pages/s (includes model load)"
    )

    # A client that reconnects with the last event id it saw gets the rest, nothing twice.
    middle = logged[len(logged) // 2]["event_id"]
    rest = grpcurl.call("WatchJob", {"job_id": job["id"], "after_event_id": middle})
    assert rest[0]["kind"] == "JOB_EVENT_KIND_SNAPSHOT"
    assert [e["event_id"] for e in rest[1:]] == [
        e["event_id"] for e in logged if int(e["event_id"]) > int(middle)
    ]

    (listed,) = grpcurl.call("ListSources", {"knowledge_base": "e2e"})
    assert {s["url"] for s in listed["sources"]} == indexed
    (got,) = grpcurl.call("GetJob", {"job_id": job["id"]})
    assert got["state"] == "JOB_STATE_SUCCEEDED"
    with pytest.raises(GrpcurlError) as info:
        grpcurl.call("CancelJob", {"job_id": job["id"]})
    assert info.value.code == "FailedPrecondition"


def test_cancel_mid_crawl_with_grpcurl(server):
    grpcurl, _, _ = server
    with FixtureSite(root=SITE, delay=0.4) as slow:
        (job,) = grpcurl.call("StartCrawl", {"url": slow.url("/docs/"), "knowledge_base": "e2e-cancel"})
        deadline = time.monotonic() + 60
        while True:
            (current,) = grpcurl.call("GetJob", {"job_id": job["id"]})
            if n(current, "pages_done") >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        (cancelled,) = grpcurl.call("CancelJob", {"job_id": job["id"]})
        assert cancelled["cancel_requested"] is True
        events = grpcurl.call("WatchJob", {"job_id": job["id"]})
        fetched = len(slow.requests)
        time.sleep(1.5)
        assert len(slow.requests) == fetched  # nothing new started after the end
    final = events[-1]["job"]
    assert final["state"] == "JOB_STATE_CANCELLED"
    assert n(final, "pages_done") < len(MANIFEST["indexable"])
    assert (
        sum(
            1 for e in events if e["kind"] == "JOB_EVENT_KIND_STATE_CHANGED" and e["job"]["state"] in TERMINAL
        )
        == 1
    )


def test_the_cli_crawls_with_a_progress_bar(server, site, workdir):
    _, env, _ = server
    result = subprocess.run(
        [
            RAGCORD,
            "crawl",
            site.url("/docs/"),
            "--kb",
            "cli",
            "--max-pages",
            "8",
            "--exclude",
            "/special/",
            "--watch",
        ],
        env={**os.environ, **env},
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = re.search(r"SUCCEEDED: (\d+) indexed, (\d+) skipped, (\d+) failed", result.stdout)
    assert summary and sum(map(int, summary.groups())) == 8, result.stdout
    jobs = subprocess.run(
        [RAGCORD, "jobs", "--kb", "cli"],
        env={**os.environ, **env, "COLUMNS": "200"},
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert jobs.returncode == 0 and "SUCCEEDED" in jobs.stdout


def test_an_operator_lists_and_deletes_a_knowledge_base(server, site, workdir):
    grpcurl, env, _ = server
    (job,) = grpcurl.call(
        "StartCrawl", {"url": site.url("/docs/"), "knowledge_base": "scratch", "max_pages": 3}
    )
    with pytest.raises(GrpcurlError) as info:  # a crawl may still write into it
        grpcurl.call("DeleteKnowledgeBase", {"knowledge_base": "scratch"})
    assert info.value.code == "FailedPrecondition" and "CancelJob" in str(info.value)
    grpcurl.call("WatchJob", {"job_id": job["id"]})
    (listed,) = grpcurl.call("ListKnowledgeBases", {})
    sizes = {kb["name"]: n(kb, "chunk_count") for kb in listed["knowledge_bases"]}
    assert sizes["scratch"] > 0

    run = {"env": {**os.environ, **env, "COLUMNS": "200"}, "cwd": workdir, "capture_output": True}
    shared = subprocess.run(
        [RAGCORD, "kbs", "--set-servers", "scratch", "--server", "123", "--server", "45"],
        text=True,
        timeout=60,
        **run,
    )
    assert shared.returncode == 0 and "45, 123" in shared.stdout, shared.stderr
    shown = subprocess.run([RAGCORD, "kbs"], text=True, timeout=60, **run)
    assert shown.returncode == 0 and "scratch" in shown.stdout and "45, 123" in shown.stdout, shown.stderr
    (listed,) = grpcurl.call("ListKnowledgeBases", {})
    [scratch] = [kb for kb in listed["knowledge_bases"] if kb["name"] == "scratch"]
    assert scratch["discord_guild_ids"] == ["45", "123"]
    refused = subprocess.run([RAGCORD, "kbs", "--delete", "scratch"], text=True, timeout=60, **run)
    assert refused.returncode == 2 and "--yes" in refused.stderr  # no terminal to confirm on
    deleted = subprocess.run([RAGCORD, "kbs", "--delete", "scratch", "--yes"], text=True, timeout=60, **run)
    assert deleted.returncode == 0, deleted.stderr
    assert f"{sizes['scratch']} chunks" in deleted.stdout

    (listed,) = grpcurl.call("ListKnowledgeBases", {})
    assert "scratch" not in {kb["name"] for kb in listed.get("knowledge_bases", [])}
    with pytest.raises(GrpcurlError) as info:
        grpcurl.call("DeleteKnowledgeBase", {"knowledge_base": "scratch"})
    assert info.value.code == "NotFound"


@pytest.fixture(scope="module")
def guarded_rpc(base_env, workdir):
    """The admin API alone with private networks refused (the production default)."""
    address = f"127.0.0.1:{free_port()}"
    env = {
        **base_env,
        "RAGCORD_GRPC_ADDRESS": address,
        "RAGCORD_ALLOW_PRIVATE_NETWORKS": "false",
        "RAGCORD_ADMIN_TOKEN": TOKEN,
        "RAGCORD_EMBEDDER": "none",
    }
    service = Service(["rpc"], env, workdir, workdir / "rpc.log")
    grpcurl = Grpcurl(address, TOKEN)
    try:
        wait_healthy(grpcurl, service)
        yield grpcurl
    finally:
        service.stop()


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("ftp://example.com/docs/", "InvalidArgument", "must use http or https"),
        ("http:///docs/", "InvalidArgument", "has no host"),
        ("http://10.0.0.1/docs/", "PermissionDenied", "private"),
        ("http://169.254.169.254/latest/meta-data/", "PermissionDenied", "link-local"),
        ("http://localhost:8000/docs/", "PermissionDenied", "resolves to 127.0.0.1"),
    ],
)
def test_bad_urls_get_a_clear_status(guarded_rpc, url, code, message):
    with pytest.raises(GrpcurlError) as info:
        guarded_rpc.call("StartCrawl", {"url": url, "knowledge_base": "docs"})
    assert info.value.code == code
    assert message in str(info.value)


def test_ask_with_grpcurl_and_the_cli(server, site, workdir):
    grpcurl, env, _ = server
    (bases,) = grpcurl.call("ListKnowledgeBases", {})
    if "e2e" not in {b["name"] for b in bases.get("knowledge_bases", [])}:
        (job,) = grpcurl.call("StartCrawl", {"url": site.url("/docs/"), "knowledge_base": "e2e"})
        grpcurl.call("WatchJob", {"job_id": job["id"]})
    (answer,) = grpcurl.call(
        "Ask", {"question": "How do I check that Quillstack installed correctly?", "knowledge_base": "e2e"}
    )
    assert answer["found"] is True
    assert answer["citations"][0]["url"].endswith("/docs/installation.html#verify")  # its section
    streamed = grpcurl.call(
        "AskStream",
        {
            "question": "and which Python versions does it run on?",
            "knowledge_base": "e2e",
            "conversation_id": answer["conversation_id"],
        },
    )
    assert any("delta" in event for event in streamed) and "answer" in streamed[-1]

    run_env = {**os.environ, **env, "COLUMNS": "200"}
    asked = subprocess.run(
        [RAGCORD, "ask", "How do I make one JSON object per log line?", "--kb", "e2e"],
        env=run_env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert asked.returncode == 0, asked.stderr
    assert "Sources:" in asked.stdout and "/docs/logging.html" in asked.stdout

    chat = subprocess.run(
        [RAGCORD, "chat", "--kb", "e2e"],
        input=(
            "How do I make a separate Python environment for my Quillstack project?\n"
            "and how do I activate it?\n/clear\n"
        ),
        env=run_env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.count("/docs/virtualenv.html") >= 2 and "conversation forgotten" in chat.stdout


def test_knowledge_base_records_and_schedules_with_grpcurl(server):
    """CreateKnowledgeBase, GetKnowledgeBase, SetSchedule, ListSchedules through the real grpcurl."""
    grpcurl, _, _ = server
    name = f"kbrec{int(time.time() * 1000) % 10**8}"
    (created,) = grpcurl.call(
        "CreateKnowledgeBase",
        {"name": name, "description": "Release notes", "answer_instructions": "not found: Ask in #help."},
    )
    assert created["name"] == name and created["description"] == "Release notes"
    with pytest.raises(GrpcurlError) as info:
        grpcurl.call("CreateKnowledgeBase", {"name": name})
    assert info.value.code == "AlreadyExists"
    (updated,) = grpcurl.call("UpdateKnowledgeBase", {"name": name, "description": "Notes"})
    assert updated["answer_instructions"] == "not found: Ask in #help."  # unset fields are kept
    with pytest.raises(GrpcurlError) as info:
        grpcurl.call("SetSchedule", {"knowledge_base": name, "every_seconds": 5})
    assert info.value.code == "InvalidArgument" and "RAGCORD_SCHEDULE_MIN_SECONDS" in str(info.value)
    (schedule,) = grpcurl.call("SetSchedule", {"knowledge_base": name, "every_seconds": 86400})
    assert schedule["every_seconds"] == "86400" and schedule["next_run_at"]
    (listed,) = grpcurl.call("ListSchedules", {})
    assert [(s["knowledge_base"], s["every_seconds"]) for s in listed["schedules"]] == [(name, "86400")]
    (got,) = grpcurl.call("GetKnowledgeBase", {"name": name})
    assert (got["description"], got["schedule"]["every_seconds"]) == ("Notes", "86400")
    grpcurl.call("DeleteKnowledgeBase", {"knowledge_base": name})
    (listed,) = grpcurl.call("ListSchedules", {})
    assert listed.get("schedules", []) == []
    with pytest.raises(GrpcurlError) as info:
        grpcurl.call("GetKnowledgeBase", {"name": name})
    assert info.value.code == "NotFound"
