"""Re-crawl schedules over real Redis (issue 22, part 4): one claimant per firing, skipped while a crawl runs,
spread over time. The worker-side thread and restarts: tests/e2e/test_schedules.py."""

from __future__ import annotations

import threading

import pytest

from ragcord.bootstrap import bootstrap
from ragcord.crawls import start_crawl
from ragcord.errors import InvalidArgument
from ragcord.schedules import Schedules, fire_due, jitter_seconds

SEED = "http://127.0.0.1:9/docs/"


@pytest.fixture
def world(make_settings):
    settings = make_settings(schedule_min_seconds=2)
    services = bootstrap(settings)
    sent: list[tuple[str, str, int]] = []
    return settings, services, Schedules(services.redis, prefix=settings.key_prefix), sent


def test_a_due_firing_recrawls_once_and_is_skipped_while_a_crawl_runs(world):
    settings, services, schedules, sent = world
    first = start_crawl(settings, services.jobs, lambda *a: None, url=SEED, knowledge_base="kb", max_pages=4)
    services.jobs.cancel(first.id)
    schedule = schedules.set("kb", 10, min_seconds=2)
    assert schedule is not None and schedule.every_seconds == 10
    at = schedule.next_run_at
    assert fire_due(settings, schedules, services.jobs, lambda *a: sent.append(a), now=lambda: at - 1) == {}

    fired = fire_due(settings, schedules, services.jobs, lambda *a: sent.append(a), now=lambda: at)
    (job,) = fired["kb"]
    assert (job.url, job.max_pages, job.knowledge_base) == (SEED, 4, "kb") and sent == [(job.id, SEED, 0)]
    following = schedules.get("kb")
    assert following is not None and following.next_run_at == at + 10 + jitter_seconds("kb", 10)

    # The re-crawl is still QUEUED when the next firing comes: skipped, and the one after is scheduled.
    skipped = fire_due(
        settings, schedules, services.jobs, lambda *a: sent.append(a), now=lambda: following.next_run_at
    )
    assert isinstance(skipped["kb"], str) and skipped["kb"].startswith("skipped") and job.id in skipped["kb"]
    assert len(sent) == 1 and [j.id for j in services.jobs.active("kb")] == [job.id]
    assert schedules.get("kb").next_run_at > following.next_run_at


def test_of_many_processes_looking_at_once_exactly_one_claims_each_firing(world):
    settings, services, schedules, _ = world
    for i in range(20):
        schedules.set(f"kb{i}", 3600, min_seconds=2)
    now = max(s.next_run_at for s in schedules.list()) + 1
    claimed: list[str] = []
    barrier = threading.Barrier(8)

    def look() -> None:
        mine = Schedules(services.redis, prefix=settings.key_prefix)  # a process of its own
        barrier.wait()
        for kb in mine.due(now):
            if mine.claim(kb, now):
                claimed.append(kb)

    threads = [threading.Thread(target=look) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(f"kb{i}" for i in range(20))  # each once, none lost
    assert schedules.due(now) == []


def test_a_hundred_schedules_set_at_once_do_not_fire_in_the_same_second(world):
    _, _, schedules, _ = world
    set_at = [schedules.set(f"site-{i}", 86400, min_seconds=2) for i in range(100)]
    seconds = {int(s.next_run_at) for s in set_at if s is not None}
    offsets = [jitter_seconds(f"site-{i}", 86400) for i in range(100)]
    assert all(0 <= o < 300 for o in offsets) and len(set(offsets)) >= 70
    assert len(seconds) >= 70  # spread over the 300 s window, not one burst
    assert max(s.next_run_at for s in set_at if s) - min(s.next_run_at for s in set_at if s) > 200
    print(f"100 daily schedules set at once fire in {len(seconds)} distinct seconds")


def test_schedules_are_listed_removed_and_validated(world):
    settings, _, schedules, _ = world
    schedules.set("b", 7200, min_seconds=2)
    schedules.set("a", 3600, min_seconds=2)
    assert [(s.knowledge_base, s.every_seconds) for s in schedules.list()] == [("a", 3600), ("b", 7200)]
    assert schedules.set("a", 0, min_seconds=2) is None
    assert [s.knowledge_base for s in schedules.list()] == ["b"]
    for bad in (1, -5, 400 * 86400):
        with pytest.raises(InvalidArgument, match="every_seconds must be between 2"):
            schedules.set("b", bad, min_seconds=2)
    assert schedules.get("b").every_seconds == 7200  # unchanged


def test_the_bot_reads_ended_recrawls_from_a_watermark_that_waits_for_running_ones(world):
    from ragcord.crawls import recrawl_knowledge_base
    from ragcord.updates import ended_recrawls

    settings, services, _, _ = world
    first = start_crawl(settings, services.jobs, lambda *a: None, url=SEED, knowledge_base="kb")
    services.jobs.cancel(first.id)
    start_crawl(settings, services.jobs, lambda *a: None, url=SEED, knowledge_base="other")  # not this kb
    (job,) = recrawl_knowledge_base(settings, services.jobs, lambda *a: None, "kb")
    now = job.created_at + 1000
    ended, since = ended_recrawls(services.jobs, "kb", 0.0, now=now)
    assert ended == [] and since == job.created_at  # the running re-crawl holds the watermark
    services.jobs.cancel(job.id)
    ended, since = ended_recrawls(services.jobs, "kb", since, now=now)
    assert [(batch, [j.id for j in jobs]) for batch, jobs in ended] == [(job.id, [job.id])]  # not `first`
    assert since == now - 300
    assert ended_recrawls(services.jobs, "kb", since, now=now) == ([], since)
