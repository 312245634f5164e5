"""Redis Cluster: every Lua script runs with KEYS of one hash slot (issue 19, part 7).

The job scripts (and the job's copy index) are called for real, through a client that records each call's
KEYS, over a crawl's whole life: created, pages started, links reserved (some beyond max_pages), a
redirect and a content hash claimed, pages finished to the end, and jobs cancelled while queued and while
running. The other scripts' KEYS come from the same helpers their classes call them with. Every script of
`test_lua_scripts.SCRIPTS` (which checks it lists every .lua file) must be covered here, so a new script
without a slot check fails this test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from ragcord.jobs import JobState, JobStore, PageOutcome
from ragcord.jobs.keys import legacy_job_keys
from ragcord.knowledge.copies import CopyIndex
from ragcord.knowledge.furniture import FurnitureIndex
from ragcord.knowledge.records import KnowledgeBaseRecords
from ragcord.lua import script_source
from ragcord.memory import ConversationMemory
from ragcord.schedules import Schedules
from ragcord.threads import OwnedThreads
from tests.unit.test_lua_scripts import SCRIPTS
from workers.politeness import SiteLimiter

SEED = "http://docs.example.com/docs/"

# Scripts not yet on one slot, and why; each must still be cross-slot (fixing one means removing it here).
CROSS_SLOT = {
    "memory/append.lua": "a conversation's turns and summary (P:conv:ID:turns, :summary): no hash tag yet",
    "memory/fold.lua": "same keys as memory/append.lua",
    "memory/merge.lua": "moves one conversation into another: two conversations, two slots",
    "feedback/vote.lua": "an answer's keys with the feedback log and the knowledge base's tally",
    "threads/own.lua": "P:owned-threads and P:owned-threads:used: two keys of all threads, no shared tag yet",
    "threads/use.lua": "same keys as threads/own.lua",
}


def script_name(source: str) -> str:
    """Which of SCRIPTS a registered source is (job scripts run after lib.lua: the longest match wins)."""
    matches = [
        (len(text), path) for package, path in SCRIPTS if (text := script_source(package, path)) in source
    ]
    assert matches, f"a script this test does not know: {source[:200]!r}"
    return max(matches)[1]


class RecordingRedis(redis.Redis):
    """A real client that records the KEYS of every script call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, list[str]]] = []

    def register_script(self, script: Any) -> Callable[..., Any]:  # type: ignore[override]
        inner = super().register_script(script)
        name = script_name(script if isinstance(script, str) else script.decode())
        calls = self.calls

        def call(keys: Any = None, args: Any = None, client: Any = None) -> Any:
            calls.append((name, [k.decode() if isinstance(k, bytes) else str(k) for k in keys or []]))
            return inner(keys=keys, args=args, client=client)

        return call


def slots(keys: list[str]) -> set[int]:
    return {key_slot(key.encode()) for key in keys}


@pytest.fixture
def recording(redis_url):
    client = RecordingRedis.from_url(redis_url)
    yield client
    client.close()


def test_every_job_script_call_touches_one_slot_over_a_crawls_life(recording, key_prefix):
    jobs = JobStore(recording, prefix=key_prefix, retention=1000)
    copies = CopyIndex(recording, prefix=key_prefix)

    job = jobs.create(knowledge_base="docs", url=SEED, max_pages=3, max_depth=2)
    assert jobs.start_page(job.id, SEED) == "run"
    children = jobs.reserve_links(job.id, SEED, [f"{SEED}{i}" for i in range(5)])  # 3 beyond max_pages
    assert len(children) == 2
    assert jobs.claim_redirect(job.id, children[0], f"{SEED}moved")
    assert jobs.claim_content(job.id, children[0], "hash-1") == children[0]
    # A whole-manual page first, then a section page of it, which takes its chunk from the manual.
    texts = [
        f"section {i} of the manual, with enough words in it to be fingerprinted as a chunk " * 3
        for i in range(6)
    ]
    copies.claim(job.id, f"{SEED}print.html", texts, list(range(6)))
    copies.claim(job.id, children[0], texts[:1], [0])
    copies.lost(job.id, children[0], texts[:1], [0])
    jobs.finish_page(job.id, SEED, PageOutcome.INDEXED, chunks=1, is_seed=True)
    for url in children:
        jobs.start_page(job.id, url)
        jobs.finish_page(job.id, url, PageOutcome.INDEXED, chunks=1)
    assert jobs.get(job.id).state.terminal

    queued = jobs.create(knowledge_base="docs", url=SEED, max_pages=3, max_depth=2)
    jobs.cancel(queued.id)  # ends at once
    running = jobs.create(knowledge_base="docs", url=SEED, max_pages=3, max_depth=2)
    jobs.start_page(running.id, SEED)
    jobs.cancel(running.id)  # the page in flight finishes, then the job ends
    jobs.finish_page(running.id, SEED, PageOutcome.INDEXED, chunks=1, is_seed=True)
    assert jobs.get(running.id).state.terminal
    # An incremental crawl's last page leaves the job to its sweep, which ends it (issue 22).
    swept = jobs.create(knowledge_base="docs", url=SEED, max_pages=3, max_depth=2)
    jobs.start_page(swept.id, SEED)
    assert jobs.finish_page(swept.id, SEED, PageOutcome.ADDED, chunks=1, is_seed=True, may_sweep=True).sweep
    assert not jobs.get(swept.id).state.terminal
    assert jobs.end_sweep(swept.id) is JobState.SUCCEEDED

    called = {name for name, _ in recording.calls}
    assert called >= {f"lua/{n}.lua" for n in ("create", "start_page", "reserve_links", "claim_url")} | {
        "lua/claim_content.lua",
        "lua/finish_page.lua",
        "lua/cancel.lua",
        "lua/end_sweep.lua",
        "copies/claim.lua",
        "copies/take.lua",
    }
    for name, keys in recording.calls:
        assert len(slots(keys)) == 1, f"{name} called with keys in {len(slots(keys))} slots: {keys}"
        assert all(key not in (jobs.keys.index, jobs.keys.active, jobs.keys.expiring) for key in keys)

    # The cross-job keys kept up beside the scripts: every job ended once, counted once.
    assert jobs.active() == []
    counters = jobs.counters()
    assert counters["jobs_created"] == 4
    assert counters["jobs_succeeded"] == 2 and counters["jobs_cancelled"] == 2
    assert counters["pages_beyond_max_pages"] == 3
    assert counters["pages_indexed"] == 5 and counters["pages_added"] == 1  # (an added page is indexed too)


def other_script_calls(client: redis.Redis, prefix: str) -> dict[str, list[list[str]]]:
    """KEYS of the scripts outside the jobs, from the helpers their classes build them with."""
    limiter = SiteLimiter(client, prefix=prefix, keep_alive=False)
    memory = ConversationMemory(client, prefix=prefix)
    threads = OwnedThreads(client, prefix=prefix)
    records = KnowledgeBaseRecords(client, prefix=prefix)
    schedules = Schedules(client, prefix=prefix)
    site = limiter._keys("https://docs.example.com:8443")
    conversation, other = memory._keys("thread-1"), memory._keys("thread-2")
    answer = f"{prefix}:answers:a1"
    return {
        "politeness/acquire.lua": [site],
        "politeness/release.lua": [site[:2]],
        "politeness/renew.lua": [site[:1]],
        "ratelimit/hit.lua": [[f"{prefix}:ratelimit:user-1"]],
        "bindings/claim.lua": [[f"{prefix}:kb-servers:docs"]],
        "memory/append.lua": [conversation],
        "memory/fold.lua": [conversation],
        "memory/merge.lua": [[*conversation, *other]],
        "feedback/vote.lua": [
            [answer, f"{answer}:votes", f"{prefix}:feedback:log", f"{prefix}:feedback:kb:docs"]
        ],
        "threads/own.lua": [[threads.key, threads.used_key]],
        "threads/use.lua": [[threads.key, threads.used_key]],
        "kbs/claim_crawls.lua": [[records.crawls_key("docs")]],
        "kbs/claim_firing.lua": [[schedules.due_key, schedules.every_key]],
        "furniture/count.lua": [FurnitureIndex(client, prefix=prefix).keys.furniture("job-1")[:2]],
    }


def test_every_other_script_is_on_one_slot_or_listed_with_its_reason(redis_client, key_prefix):
    calls = other_script_calls(redis_client, key_prefix)
    for name, key_lists in calls.items():
        spread = max(len(slots(keys)) for keys in key_lists)
        if name in CROSS_SLOT:
            assert spread > 1, f"{name} is on one slot now: remove it from CROSS_SLOT"
        else:
            assert spread == 1, f"{name} touches {spread} slots"


def test_every_script_is_covered_by_a_slot_check(redis_client, key_prefix):
    job_covered = {f"lua/{n}.lua" for n in ("create", "start_page", "reserve_links", "claim_url")} | {
        "lua/claim_content.lua",
        "lua/finish_page.lua",
        "lua/cancel.lua",
        "lua/end_sweep.lua",
        "copies/claim.lua",
        "copies/take.lua",
    }
    others = set(other_script_calls(redis_client, key_prefix))
    assert {path for _, path in SCRIPTS} == job_covered | others


def test_jobs_of_a_deployment_from_before_the_hash_tags_are_renamed_once_and_read_as_before(
    redis_client, key_prefix
):
    """An upgrade: a job recorded under the old key names (`P:job:J...`, as the previous release wrote them)
    is listed, read and watched like any other after `migrate_hash_tags`, its expiry kept."""
    jobs = JobStore(redis_client, prefix=key_prefix, retention=1000)
    old = jobs.create(knowledge_base="docs", url=SEED, max_pages=3, max_depth=2)
    jobs.start_page(old.id, SEED)
    jobs.finish_page(old.id, SEED, PageOutcome.INDEXED, chunks=2, is_seed=True)
    ended = jobs.get(old.id)
    events = [e.event_id for e in jobs.events(old.id)]
    for new, legacy in zip(jobs.keys.all_of(old.id), legacy_job_keys(key_prefix, old.id), strict=True):
        if redis_client.exists(new):
            redis_client.rename(new, legacy)  # as the previous release named them
    assert not redis_client.exists(jobs.keys.job(old.id))
    ttl = redis_client.pttl(legacy_job_keys(key_prefix, old.id)[0])
    assert ttl > 0

    assert jobs.migrate_hash_tags() == 1
    assert jobs.migrate_hash_tags() == 0  # once
    assert jobs.get(old.id) == ended
    assert [e.event_id for e in jobs.events(old.id)] == events
    assert [job.id for job in jobs.list()[0]] == [old.id]
    assert 0 < redis_client.pttl(jobs.keys.job(old.id)) <= ttl
    assert not any(redis_client.exists(key) for key in legacy_job_keys(key_prefix, old.id))
