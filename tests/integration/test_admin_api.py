"""The admin API through the Python gRPC client: validation, auth, errors (no crawling here)."""

from __future__ import annotations

import dataclasses
import socket

import grpc
import pytest
from pydantic import SecretStr

from ragcord.bindings import KnowledgeBaseOwners
from ragcord.bootstrap import bootstrap
from ragcord.errors import RagcordError
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.stores import StoredChunk
from rpc.server import build_server, check_exposure
from rpc.v1 import admin_pb2 as pb
from tests.harness import admin_api


def chunk(url: str) -> StoredChunk:
    return StoredChunk(
        id=chunk_id(url, 0),
        url=url,
        title="T",
        heading="",
        chunk_index=0,
        text=f"text of {url}",
        content_hash="h",
        indexed_at=1.0,
    )


async def code_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details()


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("ftp://example.com/docs/", grpc.StatusCode.INVALID_ARGUMENT, "must use http or https"),
        ("http:///docs/", grpc.StatusCode.INVALID_ARGUMENT, "has no host"),
        ("not a url", grpc.StatusCode.INVALID_ARGUMENT, "must use http or https"),
        ("http://10.0.0.1/docs/", grpc.StatusCode.PERMISSION_DENIED, "private"),
        ("http://169.254.169.254/latest/", grpc.StatusCode.PERMISSION_DENIED, "link-local"),
        ("http://localhost:8000/docs/", grpc.StatusCode.PERMISSION_DENIED, "resolves to"),
    ],
)
async def test_start_crawl_refuses_bad_urls_with_a_clear_status(
    make_settings, redis_client, key_prefix, url, code, message
):
    settings = make_settings(allow_private_networks=False)
    async with admin_api(settings) as (stub, _):
        got_code, details = await code_of(
            stub.StartCrawl(pb.StartCrawlRequest(url=url, knowledge_base="docs"))
        )
        jobs = await stub.ListJobs(pb.ListJobsRequest())
    assert got_code == code
    assert message in details
    assert list(jobs.jobs) == []  # nothing recorded


async def test_other_bad_requests(make_settings):
    async with admin_api(make_settings()) as (stub, _):
        code, details = await code_of(
            stub.StartCrawl(
                pb.StartCrawlRequest(
                    url="http://127.0.0.1:9/docs/", knowledge_base="docs", include_patterns=["(unclosed"]
                )
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "include_patterns" in details
        code, details = await code_of(
            stub.StartCrawl(pb.StartCrawlRequest(url="http://127.0.0.1:9/docs/", knowledge_base="Not Valid"))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "knowledge_base" in details
        code, _ = await code_of(stub.GetJob(pb.GetJobRequest(job_id="missing")))
        assert code == grpc.StatusCode.NOT_FOUND
        code, _ = await code_of(stub.ListJobs(pb.ListJobsRequest(page_size=10_000)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        code, _ = await code_of(stub.GetSource(pb.GetSourceRequest(knowledge_base="docs", url="http://x/")))
        assert code == grpc.StatusCode.NOT_FOUND
        code, details = await code_of(stub.WatchJob(pb.WatchJobRequest(job_id="missing")).read())
        assert code == grpc.StatusCode.NOT_FOUND
        for call in (
            stub.GetJob(pb.GetJobRequest()),
            stub.CancelJob(pb.CancelJobRequest()),
            stub.WatchJob(pb.WatchJobRequest()).read(),
        ):
            code, details = await code_of(call)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "job_id is required" in details


async def test_cancel_and_watch_a_queued_job(make_settings):
    async with admin_api(make_settings()) as (stub, _):
        job = await stub.StartCrawl(
            pb.StartCrawlRequest(url="http://127.0.0.1:9/docs/", knowledge_base="docs")
        )
        assert job.state == pb.JOB_STATE_QUEUED and job.max_pages == 100 and job.max_depth == 10
        cancelled = await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))
        assert cancelled.state == pb.JOB_STATE_CANCELLED
        code, details = await code_of(stub.CancelJob(pb.CancelJobRequest(job_id=job.id)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "already ended" in details
        events = [e async for e in stub.WatchJob(pb.WatchJobRequest(job_id=job.id))]
        assert [pb.JobEventKind.Name(e.kind) for e in events] == [
            "JOB_EVENT_KIND_SNAPSHOT",
            "JOB_EVENT_KIND_STATE_CHANGED",
            "JOB_EVENT_KIND_STATE_CHANGED",
        ]
        assert events[-1].job.state == pb.JOB_STATE_CANCELLED
        code, _ = await code_of(stub.WatchJob(pb.WatchJobRequest(job_id=job.id, after_event_id="x")).read())
        assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_token_guards_every_admin_call_but_not_health(make_settings):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    settings = make_settings(admin_token=SecretStr("s3cret"))
    async with admin_api(settings) as (stub, address):
        code, details = await code_of(stub.ListJobs(pb.ListJobsRequest()))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "authorization" in details
        code, _ = await code_of(
            stub.ListJobs(pb.ListJobsRequest(), metadata=(("authorization", "Bearer nope"),))
        )
        assert code == grpc.StatusCode.UNAUTHENTICATED
        code, _ = await code_of(stub.WatchJob(pb.WatchJobRequest(job_id="x")).read())
        assert code == grpc.StatusCode.UNAUTHENTICATED
        ok = await stub.ListJobs(pb.ListJobsRequest(), metadata=(("authorization", "Bearer s3cret"),))
        assert list(ok.jobs) == []
        async with grpc.aio.insecure_channel(address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_refuses_to_serve_off_loopback_without_a_token(make_settings):
    with pytest.raises(RagcordError, match="RAGCORD_ADMIN_TOKEN"):
        check_exposure(make_settings(grpc_address="0.0.0.0:50051"))
    check_exposure(make_settings(grpc_address="0.0.0.0:50051", admin_token=SecretStr("t")))
    check_exposure(make_settings(grpc_address="[::1]:50051"))


async def test_a_server_on_an_address_another_server_listens_on_is_refused_naming_the_setting(make_settings):
    # A listener as grpc makes one: with SO_REUSEPORT, which would let a second grpc server bind beside it.
    with socket.socket() as first:
        first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        first.bind(("127.0.0.1", 0))
        first.listen()
        address = f"127.0.0.1:{first.getsockname()[1]}"
        with pytest.raises(RagcordError) as refused:
            await build_server(make_settings(grpc_address=address))
    assert str(refused.value) == (
        f"the admin API's address {address} is taken (another ragcord?): "
        "set RAGCORD_GRPC_ADDRESS to a free one"
    )


async def test_metrics_count_calls_by_method_and_status_and_show_jobs(make_settings):
    import httpx
    from prometheus_client import REGISTRY

    from ragcord.bootstrap import bootstrap
    from ragcord.metrics import JobsCollector, serve_metrics

    settings = make_settings()
    services = bootstrap(settings)
    port = serve_metrics("127.0.0.1:0")
    collector = JobsCollector(services.jobs)
    REGISTRY.register(collector)
    try:
        async with admin_api(settings, services) as (stub, _):
            await stub.StartCrawl(pb.StartCrawlRequest(url="http://127.0.0.1:9/docs/", knowledge_base="docs"))
            await code_of(stub.GetJob(pb.GetJobRequest(job_id="missing")))
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        REGISTRY.unregister(collector)
    assert 'ragcord_rpc_requests_total{code="OK",method="StartCrawl"}' in body
    assert 'ragcord_rpc_requests_total{code="NOT_FOUND",method="GetJob"}' in body
    assert 'ragcord_jobs{state="queued"} 1.0' in body
    assert "ragcord_rpc_latency_seconds_bucket" in body


async def test_knowledge_bases_are_listed_and_deleted_but_never_under_a_crawl(make_settings):
    settings = make_settings()
    services = bootstrap(settings)
    for kb, pages in (("guides", 3), ("api", 1)):
        for p in range(pages):
            url = f"http://docs.example/{kb}/{p}"
            services.store.replace_page(kb, url, [chunk(url)])
    owners = KnowledgeBaseOwners(services.redis, prefix=settings.key_prefix)
    owners.claim("guides", 777)  # crawled from a Discord server
    async with admin_api(settings, services) as (stub, _):
        listed = await stub.ListKnowledgeBases(pb.ListKnowledgeBasesRequest())
        assert [(b.name, b.chunk_count, list(b.discord_guild_ids)) for b in listed.knowledge_bases] == [
            ("api", 1, []),
            ("guides", 3, ["777"]),
        ]
        shared = await stub.SetKnowledgeBaseServers(
            pb.SetKnowledgeBaseServersRequest(knowledge_base="api", discord_guild_ids=["12", "3"])
        )
        assert (shared.name, shared.chunk_count, list(shared.discord_guild_ids)) == ("api", 1, ["3", "12"])
        code, details = await code_of(
            stub.SetKnowledgeBaseServers(
                pb.SetKnowledgeBaseServersRequest(knowledge_base="api", discord_guild_ids=["me"])
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "server ids" in details
        assert owners.servers("api") == {"3", "12"}  # unchanged by the refused call

        job = await stub.StartCrawl(pb.StartCrawlRequest(url="http://127.0.0.1:9/", knowledge_base="guides"))
        code, details = await code_of(
            stub.DeleteKnowledgeBase(pb.DeleteKnowledgeBaseRequest(knowledge_base="guides"))
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION and job.id in details and "CancelJob" in details
        assert services.store.count_chunks("guides") == 3  # nothing lost

        await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))
        deleted = await stub.DeleteKnowledgeBase(pb.DeleteKnowledgeBaseRequest(knowledge_base="guides"))
        assert deleted.chunks_deleted == 3 and owners.servers("guides") == set()  # the name is free again
        owners.claim("claimed-only", 777)  # bound and claimed, never crawled
        freed = await stub.DeleteKnowledgeBase(pb.DeleteKnowledgeBaseRequest(knowledge_base="claimed-only"))
        assert freed.chunks_deleted == 0 and owners.servers("claimed-only") == set()
        listed = await stub.ListKnowledgeBases(pb.ListKnowledgeBasesRequest())
        assert [b.name for b in listed.knowledge_bases] == ["api"]

        for name, want in (("guides", grpc.StatusCode.NOT_FOUND), ("", grpc.StatusCode.INVALID_ARGUMENT)):
            code, details = await code_of(
                stub.DeleteKnowledgeBase(pb.DeleteKnowledgeBaseRequest(knowledge_base=name))
            )
            assert code == want and details
        code, _ = await code_of(
            stub.DeleteKnowledgeBase(pb.DeleteKnowledgeBaseRequest(knowledge_base="Bad!"))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_get_source_shows_each_chunks_section_and_anchor(make_settings):
    settings = make_settings()
    services = bootstrap(settings)
    url = "http://docs.example/configuration"
    sections = [("", ""), ("Configuration > Ports", "ports"), ("Configuration > Logging", "logging")]
    services.store.replace_page(
        "docs",
        url,
        [
            dataclasses.replace(
                chunk(url), id=chunk_id(url, i), chunk_index=i, heading=heading, anchor=anchor
            )
            for i, (heading, anchor) in enumerate(sections)
        ],
    )
    async with admin_api(settings, services) as (stub, _):
        detail = await stub.GetSource(pb.GetSourceRequest(knowledge_base="docs", url=url))

    assert [(c.index, c.heading, c.anchor) for c in detail.chunks] == [
        (0, "", ""),
        (1, "Configuration > Ports", "ports"),
        (2, "Configuration > Logging", "logging"),
    ]
    assert detail.source.chunk_count == 3


async def test_asking_a_knowledge_base_that_does_not_exist_names_the_ones_that_do(make_settings):
    settings = make_settings()
    services = bootstrap(settings)
    services.store.replace_page("docs", "http://x/a", [chunk("http://x/a")])
    async with admin_api(settings, services) as (stub, _):
        for call in (
            stub.Ask(pb.AskRequest(question="How do I install it?", knowledge_base="nokb")),
            stub.ListSources(pb.ListSourcesRequest(knowledge_base="nokb")),
            stub.ListSources(pb.ListSourcesRequest()),  # the default knowledge base, never crawled
            stub.AskStream(pb.AskRequest(question="How do I install it?", knowledge_base="nokb")).read(),
            stub.GetSource(pb.GetSourceRequest(knowledge_base="nokb", url="http://x/a")),
            stub.DeleteSource(pb.DeleteSourceRequest(knowledge_base="nokb", url="http://x/a")),
        ):
            code, details = await code_of(call)
            assert code == grpc.StatusCode.NOT_FOUND
            assert "does not exist; existing: docs" in details
        assert (
            "RAGCORD_DEFAULT_KNOWLEDGE_BASE" in (await code_of(stub.ListSources(pb.ListSourcesRequest())))[1]
        )
        code, details = await code_of(
            stub.GetSource(pb.GetSourceRequest(knowledge_base="docs", url="http://x/b"))
        )
        assert code == grpc.StatusCode.NOT_FOUND and "http://x/b is not in knowledge base 'docs'" in details
        answer = await stub.Ask(pb.AskRequest(question="What is the text of it?", knowledge_base="docs"))
        assert answer.citations[0].url == "http://x/a"
