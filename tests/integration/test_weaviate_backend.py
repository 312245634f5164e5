"""RAGCORD_STORE=weaviate end to end against the Weaviate protocol fake (tests/weaviate_fake.py) with the real
weaviate-client: settings to store, a crawl by a real worker, answers, `ragcord store copy`, and the errors
an operator sees when the configuration is wrong."""

from __future__ import annotations

import uuid

import pytest

from cli.main import main
from ragcord.answering.service import build_ask_service
from ragcord.bootstrap import bootstrap
from ragcord.errors import StoreError
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.search import Retriever
from ragcord.knowledge.stores import StoredChunk, build_store
from ragcord.knowledge.stores.lancedb import LanceDBStore
from ragcord.knowledge.stores.weaviate import WeaviateStore
from tests.harness import crawl, free_port
from tests.integration.conftest import QUESTIONS, SITE
from tests.integration.test_retrieval import evaluate
from tests.sitekit import FixtureSite
from tests.weaviate_fake import running_weaviate


@pytest.fixture(scope="module")
def weaviate():
    with running_weaviate() as fake:
        yield fake
        assert fake.unimplemented == []


@pytest.fixture
def settings(indexed, weaviate, tmp_path):
    """The indexed fixture's settings pointed at the fake, with a collection of this test's own."""
    return indexed.settings.model_copy(
        update={
            "store": "weaviate",
            "weaviate_url": weaviate.http_url,
            "weaviate_grpc_port": weaviate.grpc_port,
            "weaviate_collection": f"RagcordTest{uuid.uuid4().hex[:12]}",
            "data_dir": tmp_path,
        }
    )


def vectors_page(url: str, n: int, dim: int) -> list[StoredChunk]:
    return [
        StoredChunk(
            id=chunk_id(url, i),
            url=url,
            title="T",
            heading="",
            chunk_index=i,
            text=f"chunk {i}",
            content_hash="h",
            indexed_at=1.0,
            vector=[1.0] * dim,
        )
        for i in range(n)
    ]


def test_a_crawl_into_weaviate_answers_like_the_embedded_store(settings, indexed):
    store = build_store(settings, dim=indexed.embedder.dim)
    assert isinstance(store, WeaviateStore)
    services = bootstrap(settings, redis_client=indexed.redis, embedder=indexed.embedder, store=store)
    try:
        with FixtureSite(root=SITE) as site:
            job = crawl(settings, services, site.url("/docs/"), "docs", exclude_patterns=["/special/"])
        assert job.state.value == "SUCCEEDED"
        assert store.count_chunks("docs") == indexed.store.count_chunks("docs")
        assert len(store.list_sources("docs")) == len(indexed.store.list_sources("docs"))

        on_weaviate = evaluate(Retriever(store, indexed.embedder), QUESTIONS)
        on_lancedb = evaluate(Retriever(indexed.store, indexed.embedder), QUESTIONS)
        print(f"\nweaviate (fake) {on_weaviate}\nlancedb {on_lancedb}")
        assert on_weaviate["hit@5"] >= on_lancedb["hit@5"] - 0.05

        answer = build_ask_service(services).ask("How do I install Quillstack?", knowledge_base="docs")
        assert answer.found and any("installation" in c.url for c in answer.citations)
    finally:
        store.client.collections.delete(settings.weaviate_collection)
        store.close()


def test_store_copy_moves_a_knowledge_base_from_lancedb_to_weaviate(settings, monkeypatch, capsys):
    source = LanceDBStore(settings.lancedb_dir, dim=384)
    for p in range(12):
        url = f"http://docs.example/{p}"
        source.replace_page("guides", url, vectors_page(url, 1 + p % 3, 384))
    for name, value in {
        "RAGCORD_DATA_DIR": str(settings.data_dir),
        "RAGCORD_WEAVIATE_URL": settings.weaviate_url,
        "RAGCORD_WEAVIATE_GRPC_PORT": str(settings.weaviate_grpc_port),
        "RAGCORD_WEAVIATE_COLLECTION": settings.weaviate_collection,
        "RAGCORD_EMBEDDER": "local",
    }.items():
        monkeypatch.setenv(name, value)

    assert main(["store", "copy", "--from", "lancedb", "--to", "weaviate", "--kb", "guides"]) == 0
    assert main(["store", "copy", "--from", "lancedb", "--to", "weaviate"]) == 0  # again: converges

    out = capsys.readouterr().out
    assert "guides: 12 pages, 24 chunks copied to weaviate" in out
    target = build_store(settings, dim=384)
    try:
        assert target.count_chunks("guides") == 24 and target.knowledge_bases() == ["guides"]
        exported = {c.id: c.vector for batch in target.export("guides") for c in batch}
        assert exported[chunk_id("http://docs.example/5", 2)] == [1.0] * 384
    finally:
        target.client.collections.delete(settings.weaviate_collection)
        target.close()


def test_a_wrong_grpc_port_is_reported_at_start_not_at_the_first_question(settings):
    wrong = settings.model_copy(update={"weaviate_grpc_port": free_port()})

    with pytest.raises(StoreError, match="RAGCORD_WEAVIATE_GRPC_PORT"):
        build_store(wrong, dim=4)


def test_a_knowledge_base_keeps_the_dimension_it_was_crawled_with(settings):
    first = build_store(settings, dim=4)
    second = build_store(settings, dim=8)  # RAGCORD_EMBEDDER changed, same Weaviate
    try:
        first.replace_page("kb", "http://x/a", vectors_page("http://x/a", 2, 4))
        with pytest.raises(StoreError, match="holds 4-dimension vectors but the embedder makes 8"):
            second.vector_search("kb", [1.0] * 8, 3)
        with pytest.raises(StoreError, match="re-crawl it into a new knowledge base"):
            second.replace_page("kb", "http://x/b", vectors_page("http://x/b", 1, 8))
        assert first.count_chunks("kb") == 2  # nothing half-written
    finally:
        first.client.collections.delete(settings.weaviate_collection)
        first.close()
        second.close()


def test_a_collection_deleted_under_a_running_store_serves_nothing_and_refuses_writes(settings):
    store = build_store(settings, dim=4)
    try:
        store.replace_page("kb", "http://x/a", vectors_page("http://x/a", 1, 4))
        store.client.collections.delete(settings.weaviate_collection)
        assert store.keyword_search("kb", "chunk", 3) == []  # nothing stale
        assert store.count_chunks("kb") == 0
        with pytest.raises(StoreError, match="could not store http://x/b"):
            store.replace_page("kb", "http://x/b", vectors_page("http://x/b", 1, 4))
    finally:
        store.close()
