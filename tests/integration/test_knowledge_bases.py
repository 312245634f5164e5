"""Knowledge bases that remember their sources (issue 22, part 3): records, sources, re-crawls, and never two
crawls of one knowledge base at once. Through the real gRPC server over real Redis; no worker runs, so
started crawls stay QUEUED until cancelled."""

from __future__ import annotations

import threading

import grpc
import pytest

from ragcord.bootstrap import bootstrap
from ragcord.crawls import start_crawl
from ragcord.errors import Aborted
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.stores import StoredChunk
from rpc.v1 import admin_pb2 as pb
from tests.harness import admin_api

SEED = "http://127.0.0.1:9/docs/"
OTHER = "http://127.0.0.1:9/guide/"


async def code_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details()


async def test_create_get_update_list_and_delete_a_knowledge_base(make_settings):
    async with admin_api(make_settings()) as (stub, _):
        created = await stub.CreateKnowledgeBase(
            pb.CreateKnowledgeBaseRequest(
                name="guides", description="Our guides", answer_instructions="Be brief."
            )
        )
        assert (created.name, created.description, created.answer_instructions) == (
            "guides",
            "Our guides",
            "Be brief.",
        )
        assert created.created_at.seconds > 0 and created.chunk_count == 0 and list(created.sources) == []
        code, details = await code_of(stub.CreateKnowledgeBase(pb.CreateKnowledgeBaseRequest(name="guides")))
        assert code == grpc.StatusCode.ALREADY_EXISTS and "UpdateKnowledgeBase" in details

        # Only the fields set change (proto3 optional).
        updated = await stub.UpdateKnowledgeBase(
            pb.UpdateKnowledgeBaseRequest(name="guides", answer_instructions="not found: Ask in #help.")
        )
        assert (updated.description, updated.answer_instructions) == (
            "Our guides",
            "not found: Ask in #help.",
        )
        cleared = await stub.UpdateKnowledgeBase(pb.UpdateKnowledgeBaseRequest(name="guides", description=""))
        assert (cleared.description, cleared.answer_instructions) == ("", "not found: Ask in #help.")
        got = await stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(name="guides"))
        assert got.answer_instructions == "not found: Ask in #help." and not got.HasField("schedule")

        listed = await stub.ListKnowledgeBases(pb.ListKnowledgeBasesRequest())
        assert [(b.name, b.answer_instructions) for b in listed.knowledge_bases] == [
            ("guides", "not found: Ask in #help.")
        ]

        deleted = await stub.DeleteKnowledgeBase(pb.DeleteKnowledgeBaseRequest(knowledge_base="guides"))
        assert deleted.chunks_deleted == 0
        code, details = await code_of(stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(name="guides")))
        assert code == grpc.StatusCode.NOT_FOUND and "CreateKnowledgeBase" in details
        assert list((await stub.ListKnowledgeBases(pb.ListKnowledgeBasesRequest())).knowledge_bases) == []


async def test_bad_knowledge_base_requests_say_what_to_fix_and_write_nothing(make_settings):
    async with admin_api(make_settings()) as (stub, _):
        cases = [
            (stub.CreateKnowledgeBase(pb.CreateKnowledgeBaseRequest(name="")), "name is required"),
            (stub.CreateKnowledgeBase(pb.CreateKnowledgeBaseRequest(name="Bad Name")), "is not valid"),
            (
                stub.CreateKnowledgeBase(pb.CreateKnowledgeBaseRequest(name="kb", description="x" * 2001)),
                "description is 2001 characters; keep it to 2000",
            ),
            (
                stub.CreateKnowledgeBase(
                    pb.CreateKnowledgeBaseRequest(name="kb", answer_instructions="x" * 5000)
                ),
                "answer_instructions is 5000 characters",
            ),
            (
                stub.SetSchedule(pb.SetScheduleRequest(knowledge_base="", every_seconds=3600)),
                "knowledge_base",
            ),
        ]
        for call, message in cases:
            code, details = await code_of(call)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and message in details, details
        code, _ = await code_of(
            stub.UpdateKnowledgeBase(pb.UpdateKnowledgeBaseRequest(name="kb", description="d"))
        )
        assert code == grpc.StatusCode.NOT_FOUND
        code, _ = await code_of(stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(name="kb")))
        assert code == grpc.StatusCode.NOT_FOUND  # none of the refused calls created it
        await stub.CreateKnowledgeBase(pb.CreateKnowledgeBaseRequest(name="kb"))
        code, details = await code_of(
            stub.UpdateKnowledgeBase(pb.UpdateKnowledgeBaseRequest(name="kb", description="y" * 2001))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert (await stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(name="kb"))).description == ""


async def test_a_knowledge_base_with_pages_exists_already(make_settings):
    settings = make_settings()
    services = bootstrap(settings)
    url = "http://docs.example/a"
    services.store.replace_page(
        "filled",
        url,
        [
            StoredChunk(
                id=chunk_id(url, 0),
                url=url,
                title="T",
                heading="",
                chunk_index=0,
                text="t",
                content_hash="h",
                indexed_at=1.0,
            )
        ],
    )
    async with admin_api(settings, services) as (stub, _):
        code, _ = await code_of(stub.CreateKnowledgeBase(pb.CreateKnowledgeBaseRequest(name="filled")))
        assert code == grpc.StatusCode.ALREADY_EXISTS
        got = await stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(name="filled"))
        assert (got.chunk_count, got.page_count, got.description) == (1, 1, "")


async def test_every_crawl_is_a_source_and_a_second_crawl_into_the_knowledge_base_is_aborted(make_settings):
    async with admin_api(make_settings()) as (stub, _):
        first = await stub.StartCrawl(
            pb.StartCrawlRequest(url=SEED, knowledge_base="docs", max_pages=7, exclude_patterns=["/old/"])
        )
        # A second crawl, of any seed, while the first has not ended: ABORTED naming the running job.
        for url in (SEED, OTHER):
            code, details = await code_of(
                stub.StartCrawl(pb.StartCrawlRequest(url=url, knowledge_base="docs"))
            )
            assert code == grpc.StatusCode.ABORTED and first.id in details and "CancelJob" in details
        code, details = await code_of(
            stub.RecrawlKnowledgeBase(pb.RecrawlKnowledgeBaseRequest(knowledge_base="docs"))
        )
        assert code == grpc.StatusCode.ABORTED and first.id in details
        other_kb = await stub.StartCrawl(pb.StartCrawlRequest(url=SEED, knowledge_base="elsewhere"))
        assert other_kb.state == pb.JOB_STATE_QUEUED  # other knowledge bases are not held

        await stub.CancelJob(pb.CancelJobRequest(job_id=first.id))
        second = await stub.StartCrawl(pb.StartCrawlRequest(url=OTHER, knowledge_base="docs", max_depth=2))
        got = await stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(name="docs"))
        by_url = {s.url: s for s in got.sources}
        assert list(by_url) == [SEED, OTHER]  # oldest first
        seed = by_url[SEED]
        assert (seed.max_pages, list(seed.exclude_patterns), seed.last_job_id) == (7, ["/old/"], first.id)
        assert seed.last_state == pb.JOB_STATE_CANCELLED and seed.last_finished_at.seconds > 0
        assert (by_url[OTHER].max_depth, by_url[OTHER].last_state) == (2, pb.JOB_STATE_QUEUED)
        await stub.CancelJob(pb.CancelJobRequest(job_id=second.id))

        # The same seed again updates its source: still two sources.
        third = await stub.StartCrawl(pb.StartCrawlRequest(url=SEED, knowledge_base="docs", max_pages=9))
        await stub.CancelJob(pb.CancelJobRequest(job_id=third.id))
        got = await stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(name="docs"))
        assert [(s.url, s.max_pages, s.last_job_id) for s in got.sources] == [
            (SEED, 9, third.id),
            (OTHER, 100, second.id),
        ]

        # A re-crawl starts one job per source with the stored scope and limits.
        recrawl = await stub.RecrawlKnowledgeBase(pb.RecrawlKnowledgeBaseRequest(knowledge_base="docs"))
        jobs = {j.url: j for j in recrawl.jobs}
        assert set(jobs) == {SEED, OTHER} and jobs[SEED].max_pages == 9 and jobs[OTHER].max_depth == 2
        code, details = await code_of(stub.StartCrawl(pb.StartCrawlRequest(url=SEED, knowledge_base="docs")))
        assert code == grpc.StatusCode.ABORTED and any(j.id in details for j in recrawl.jobs)
        for job in recrawl.jobs:
            await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))
        got = await stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(name="docs"))
        assert {s.last_job_id for s in got.sources} == {j.id for j in recrawl.jobs}

        code, details = await code_of(
            stub.RecrawlKnowledgeBase(pb.RecrawlKnowledgeBaseRequest(knowledge_base="nothing"))
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "no sources" in details

        deleted = await stub.DeleteKnowledgeBase(pb.DeleteKnowledgeBaseRequest(knowledge_base="docs"))
        assert deleted.chunks_deleted == 0
        code, _ = await code_of(stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(name="docs")))
        assert code == grpc.StatusCode.NOT_FOUND  # sources gone with it


def test_of_many_concurrent_crawls_into_one_knowledge_base_exactly_one_starts(make_settings):
    settings = make_settings()
    services = bootstrap(settings)
    barrier = threading.Barrier(12)
    started, aborted, errors = [], [], []

    def attempt() -> None:
        barrier.wait()
        try:
            started.append(
                start_crawl(settings, services.jobs, lambda *a: None, url=SEED, knowledge_base="race")
            )
        except Aborted as exc:
            aborted.append(str(exc))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(started) == 1 and len(aborted) == 11
    assert all(started[0].id in message for message in aborted)
    assert [j.id for j in services.jobs.active("race")] == [started[0].id]


async def test_schedules_through_the_api(make_settings):
    async with admin_api(make_settings()) as (stub, _):
        code, details = await code_of(
            stub.SetSchedule(pb.SetScheduleRequest(knowledge_base="nightly", every_seconds=86400))
        )
        assert code == grpc.StatusCode.NOT_FOUND  # no such knowledge base yet
        await stub.CreateKnowledgeBase(pb.CreateKnowledgeBaseRequest(name="nightly"))
        code, details = await code_of(
            stub.SetSchedule(pb.SetScheduleRequest(knowledge_base="nightly", every_seconds=60))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "between 3600" in details
        schedule = await stub.SetSchedule(
            pb.SetScheduleRequest(knowledge_base="nightly", every_seconds=86400)
        )
        assert schedule.every_seconds == 86400 and schedule.next_run_at.seconds > 0
        listed = await stub.ListSchedules(pb.ListSchedulesRequest())
        assert [(s.knowledge_base, s.every_seconds) for s in listed.schedules] == [("nightly", 86400)]
        got = await stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(name="nightly"))
        assert got.schedule.every_seconds == 86400
        removed = await stub.SetSchedule(pb.SetScheduleRequest(knowledge_base="nightly", every_seconds=0))
        assert removed.every_seconds == 0 and not removed.HasField("next_run_at")
        assert list((await stub.ListSchedules(pb.ListSchedulesRequest())).schedules) == []
        await stub.SetSchedule(pb.SetScheduleRequest(knowledge_base="nightly", every_seconds=3600))
        await stub.DeleteKnowledgeBase(pb.DeleteKnowledgeBaseRequest(knowledge_base="nightly"))
        assert list((await stub.ListSchedules(pb.ListSchedulesRequest())).schedules) == []
