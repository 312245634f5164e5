"""The Weaviate store against a recording fake of the client: the schema, objects and queries it builds."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from weaviate.collections.classes.aggregate import AggregateReturn
from weaviate.collections.classes.batch import BatchObjectReturn, DeleteManyReturn, ErrorObject
from weaviate.collections.classes.config import _CollectionConfigCreate
from weaviate.collections.classes.filters import _FilterValue
from weaviate.collections.classes.internal import MetadataReturn, Object, QueryReturn
from weaviate.exceptions import WeaviateConnectionError, WeaviateInsertManyAllFailedError, WeaviateQueryError

from ragcord.errors import InvalidArgument, NotFound, StoreError
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.stores import StoredChunk, build_store
from ragcord.knowledge.stores.weaviate import WeaviateStore, connect
from ragcord.settings import Settings
from tests.harness import free_port

PROPS = ["url", "title", "heading", "chunk_index", "text", "content_hash", "indexed_at", "anchor"]


class FakeTenantView:
    """`collection.with_tenant(kb)`: every call is recorded as (tenant, method, args, kwargs)."""

    def __init__(self, collection: FakeCollection, tenant: str) -> None:
        self.collection, self.tenant = collection, tenant
        self.data = SimpleNamespace(
            insert_many=self._call("insert_many"), delete_many=self._call("delete_many")
        )
        self.query = SimpleNamespace(
            bm25=self._call("bm25"),
            near_vector=self._call("near_vector"),
            fetch_objects=self._call("fetch_objects"),
        )
        self.aggregate = SimpleNamespace(over_all=self._call("over_all"))
        self.iterator = self._call("iterator")

    def _call(self, method: str):
        def call(*args: Any, **kwargs: Any) -> Any:
            self.collection.calls.append((self.tenant, method, args, kwargs))
            reply = self.collection.replies.get(method)
            if isinstance(reply, BaseException):
                raise reply
            return reply

        return call


class FakeCollection:
    def __init__(self, tenants: set[str] | None = None, properties: list[str] | None = None) -> None:
        self.calls: list[tuple[str, str, tuple, dict]] = []
        self.replies: dict[str, Any] = {
            "insert_many": BatchObjectReturn(),
            "delete_many": DeleteManyReturn(failed=0, matches=0, objects=None, successful=0),
            "bm25": QueryReturn(objects=[]),
            "near_vector": QueryReturn(objects=[]),
            "fetch_objects": QueryReturn(objects=[]),
            "over_all": AggregateReturn(properties={}, total_count=0),
            "iterator": [],
        }
        self.tenant_names = set(tenants or ())
        self.created_tenants: list[Any] = []
        self.added_properties: list[Any] = []
        existing = [SimpleNamespace(name=name) for name in (properties or PROPS)]
        self.config = SimpleNamespace(
            get=lambda: SimpleNamespace(
                multi_tenancy_config=SimpleNamespace(enabled=True), properties=existing
            ),
            add_property=self.added_properties.append,
        )
        self.tenants = SimpleNamespace(
            exists=lambda name: name in self.tenant_names,
            create=self._create_tenant,
            get=lambda: {name: SimpleNamespace(name=name) for name in self.tenant_names},
        )

    def _create_tenant(self, tenant: Any) -> None:
        self.created_tenants.append(tenant)
        self.tenant_names.add(tenant.name)

    def with_tenant(self, tenant: str) -> FakeTenantView:
        return FakeTenantView(self, tenant)

    def called(self, method: str) -> list[tuple[str, tuple, dict]]:
        return [(tenant, args, kwargs) for tenant, m, args, kwargs in self.calls if m == method]


class FakeClient:
    def __init__(self, collection: FakeCollection | None = None, *, exists: bool = False) -> None:
        self.collection = collection or FakeCollection()
        self.exists = exists
        self.created: list[tuple[str, dict]] = []
        self.collections = SimpleNamespace(
            exists=lambda name: self.exists, create=self._create, get=lambda name: self.collection
        )

    def _create(self, name: str, **kwargs: Any) -> FakeCollection:
        self.created.append((name, kwargs))
        self.exists = True
        return self.collection


def render(where: Any) -> Any:
    """A filter as plain tuples: (property, operator, value) or (And/Or, [parts])."""
    if isinstance(where, _FilterValue):
        return (where.target, where.operator.value, where.value)
    return (where.operator.value, [render(part) for part in where.filters])


def chunks(url: str, n: int, dim: int = 3) -> list[StoredChunk]:
    return [
        StoredChunk(
            id=chunk_id(url, i),
            url=url,
            title="Title",
            heading="H",
            chunk_index=i,
            text=f"text {i}",
            content_hash="hash",
            indexed_at=10.0 + i,
            vector=[float(i)] * dim,
            anchor=f"section-{i}",
        )
        for i in range(n)
    ]


def hit(url: str, index: int, **metadata: float) -> Object:
    props = {"url": url, "title": "T", "heading": "H", "chunk_index": index, "text": f"text {index}"}
    props |= {"content_hash": "h", "indexed_at": 5.0}
    return Object(
        uuid=uuid.UUID(chunk_id(url, index)),
        metadata=MetadataReturn(**metadata),
        properties=props,
        references=None,
        vector={},
        collection="RagcordChunk",
    )


@pytest.fixture
def fake() -> FakeClient:
    return FakeClient(FakeCollection(tenants={"docs"}))


def test_a_new_collection_is_multi_tenant_with_self_provided_cosine_vectors(fake):
    WeaviateStore(fake, dim=3, collection="Chunks")

    [(name, kwargs)] = fake.created
    config = _CollectionConfigCreate(name=name, **kwargs)._to_dict()  # what the real client would send
    assert config["class"] == "Chunks"
    assert config["multiTenancyConfig"]["enabled"] is True
    assert config["multiTenancyConfig"]["autoTenantActivation"] is True
    vector = config["vectorConfig"]["default"]
    assert vector["vectorizer"] == {"none": {}}
    assert vector["vectorIndexType"] == "hnsw" and vector["vectorIndexConfig"]["distance"] == "cosine"
    props = {p["name"]: p for p in config["properties"]}
    assert list(props) == PROPS
    assert props["chunk_index"]["dataType"] == ["int"] and props["indexed_at"]["dataType"] == ["number"]
    assert props["url"]["tokenization"] == "field" and props["url"]["indexFilterable"] is True
    searchable = [name for name, p in props.items() if p.get("indexSearchable")]
    assert searchable == ["text"]


def test_an_existing_collection_gains_missing_properties_and_loses_none():
    collection = FakeCollection(properties=["url", "title", "text", "extra"])
    client = FakeClient(collection, exists=True)

    WeaviateStore(client, dim=3)

    assert client.created == []
    assert [p.name for p in collection.added_properties] == [
        "heading",
        "chunk_index",
        "content_hash",
        "indexed_at",
        "anchor",
    ]


def test_an_existing_collection_without_multi_tenancy_is_refused():
    collection = FakeCollection()
    collection.config.get = lambda: SimpleNamespace(
        multi_tenancy_config=SimpleNamespace(enabled=False), properties=[]
    )
    with pytest.raises(StoreError, match="multi-tenancy"):
        WeaviateStore(FakeClient(collection, exists=True), dim=3)


def test_the_first_write_to_a_knowledge_base_creates_its_tenant_once(fake):
    store = WeaviateStore(fake, dim=3)

    store.replace_page("guides", "http://x/a", chunks("http://x/a", 1))
    store.replace_page("guides", "http://x/b", chunks("http://x/b", 1))

    assert [t.name for t in fake.collection.created_tenants] == ["guides"]
    assert {tenant for tenant, *_ in fake.collection.calls} == {"guides"}


def test_a_page_becomes_data_objects_with_deterministic_ids_and_named_vectors(fake):
    store = WeaviateStore(fake, dim=3)

    store.replace_page("docs", "http://x/a", chunks("http://x/a", 2))

    [(tenant, (objects,), _)] = fake.collection.called("insert_many")
    assert tenant == "docs"
    assert [o.uuid for o in objects] == [chunk_id("http://x/a", 0), chunk_id("http://x/a", 1)]
    assert objects[1].properties == {
        "url": "http://x/a",
        "title": "Title",
        "heading": "H",
        "chunk_index": 1,
        "text": "text 1",
        "content_hash": "hash",
        "indexed_at": 11.0,
        "anchor": "section-1",
    }
    assert objects[1].vector == {"default": [1.0, 1.0, 1.0]}


def test_a_page_that_shrank_loses_every_chunk_it_no_longer_has(fake):
    store = WeaviateStore(fake, dim=3)

    store.replace_page("docs", "http://x/a", chunks("http://x/a", 2))

    [(tenant, _, kwargs)] = fake.collection.called("delete_many")
    assert tenant == "docs"
    assert render(kwargs["where"]) == (
        "And",
        [
            ("url", "Equal", "http://x/a"),
            ("_id", "ContainsNone", [chunk_id("http://x/a", i) for i in (0, 1)]),
        ],
    )
    writes = [m for _, m, *_ in fake.collection.calls if m != "fetch_objects"]  # (that reads the dimension)
    assert writes == ["insert_many", "delete_many"]  # upsert first


def test_a_page_with_no_chunks_is_removed(fake):
    WeaviateStore(fake, dim=3).replace_page("docs", "http://x/a", [])

    assert fake.collection.called("insert_many") == []
    [(_, _, kwargs)] = fake.collection.called("delete_many")
    assert render(kwargs["where"]) == ("url", "Equal", "http://x/a")


def test_without_an_embedder_objects_carry_no_vector(fake):
    WeaviateStore(fake, dim=None).replace_page("docs", "http://x/a", chunks("http://x/a", 1))

    [(_, (objects,), _)] = fake.collection.called("insert_many")
    assert objects[0].vector is None


def test_batch_errors_become_a_store_error_with_the_first_messages(fake):
    failed = {i: ErrorObject(message=f"bad vector {i}", object_=None) for i in range(5)}
    fake.collection.replies["insert_many"] = BatchObjectReturn(errors=failed)
    store = WeaviateStore(fake, dim=3)

    with pytest.raises(StoreError) as raised:
        store.replace_page("docs", "http://x/a", chunks("http://x/a", 6))

    message = str(raised.value)
    assert "5 of 6 chunks of http://x/a" in message and "'docs'" in message
    assert "bad vector 0; bad vector 1; bad vector 2" in message and "bad vector 3" not in message
    [(_, _, kwargs)] = fake.collection.called("delete_many")  # a page half old, half new is served by no one
    assert render(kwargs["where"]) == ("url", "Equal", "http://x/a")


def test_a_batch_where_every_object_failed_is_a_store_error_too(fake):
    fake.collection.replies["insert_many"] = WeaviateInsertManyAllFailedError(
        "Here is the set of all errors: {}".format("\n".join(["wrong dims", "tenant cold", "x", "y"]))
    )

    with pytest.raises(StoreError) as raised:
        WeaviateStore(fake, dim=3).replace_page("docs", "http://x/a", chunks("http://x/a", 2))

    assert str(raised.value).endswith(
        "2 of 2 chunks of http://x/a were not stored in knowledge base 'docs': wrong dims; tenant cold; x"
    )


def test_client_errors_become_store_errors(fake):
    fake.collection.replies["insert_many"] = WeaviateConnectionError("down")
    store = WeaviateStore(fake, dim=3)

    with pytest.raises(StoreError, match="could not store http://x/a in knowledge base 'docs'"):
        store.replace_page("docs", "http://x/a", chunks("http://x/a", 1))


def test_keyword_search_is_bm25_on_text_in_the_tenant_with_the_source_filter(fake):
    fake.collection.replies["bm25"] = QueryReturn(objects=[hit("http://x/a", 2, score=3.5)])
    store = WeaviateStore(fake, dim=3)

    [result] = store.keyword_search("docs", "rare words", 7, source="http://x/a")

    [(tenant, args, kwargs)] = fake.collection.called("bm25")
    assert tenant == "docs" and args == ("rare words",)
    assert kwargs["query_properties"] == ["text"] and kwargs["limit"] == 7
    assert render(kwargs["filters"]) == ("url", "Equal", "http://x/a")
    assert kwargs["return_metadata"].score is True
    assert result.score == 3.5
    assert result.chunk.id == chunk_id("http://x/a", 2) and result.chunk.chunk_index == 2


def test_keyword_search_without_terms_or_tenant_asks_nothing(fake):
    store = WeaviateStore(fake, dim=3)

    assert store.keyword_search("docs", " ?! ", 5) == []
    assert store.keyword_search("other", "words", 5) == []
    assert fake.collection.calls == []


def test_vector_search_is_near_vector_with_cosine_similarity_from_distance(fake):
    fake.collection.replies["near_vector"] = QueryReturn(
        objects=[hit("http://x/a", 0, distance=0.25), hit("http://x/b", 1, distance=0.5)]
    )
    store = WeaviateStore(fake, dim=3)

    results = store.vector_search("docs", [0.1, 0.2, 0.3], 4)

    [(tenant, args, kwargs)] = fake.collection.called("near_vector")
    assert tenant == "docs" and args == ([0.1, 0.2, 0.3],)
    assert kwargs["limit"] == 4 and kwargs["filters"] is None and kwargs["target_vector"] == "default"
    assert kwargs["return_metadata"].distance is True
    assert [(r.chunk.url, r.score) for r in results] == [("http://x/a", 0.75), ("http://x/b", 0.5)]


def test_vector_search_without_vectors_is_empty(fake):
    assert WeaviateStore(fake, dim=None).vector_search("docs", [0.1, 0.2, 0.3], 4) == []
    assert WeaviateStore(fake, dim=3).vector_search("docs", [], 4) == []
    assert fake.collection.called("near_vector") == []


def test_reads_of_a_missing_knowledge_base_are_empty_or_not_found(fake):
    store = WeaviateStore(fake, dim=3)

    assert store.count_chunks("nope") == 0
    assert store.list_sources("nope") == []
    assert store.chunks_of("nope", "http://x/a", [0]) == []
    with pytest.raises(NotFound):
        store.get_source("nope", "http://x/a")
    with pytest.raises(NotFound):
        store.delete_source("nope", "http://x/a")
    with pytest.raises(NotFound):
        next(store.export("nope"))
    assert fake.collection.calls == [] and fake.collection.created_tenants == []


def test_invalid_knowledge_base_names_are_refused(fake):
    with pytest.raises(InvalidArgument):
        WeaviateStore(fake, dim=3).replace_page("Bad Name", "http://x/a", chunks("http://x/a", 1))


def test_delete_source_filters_on_url_and_returns_the_count(fake):
    fake.collection.replies["delete_many"] = DeleteManyReturn(failed=0, matches=3, objects=None, successful=3)
    store = WeaviateStore(fake, dim=3)

    assert store.delete_source("docs", "http://x/a") == 3
    [(tenant, _, kwargs)] = fake.collection.called("delete_many")
    assert tenant == "docs" and render(kwargs["where"]) == ("url", "Equal", "http://x/a")


def test_delete_source_of_an_unknown_page_is_not_found(fake):
    with pytest.raises(NotFound, match="ListSources"):
        WeaviateStore(fake, dim=3).delete_source("docs", "http://x/a")


def test_get_source_and_chunks_of_come_back_in_page_order(fake):
    fake.collection.replies["fetch_objects"] = QueryReturn(
        objects=[hit("http://x/a", 2), hit("http://x/a", 0)]
    )
    store = WeaviateStore(fake, dim=3)

    detail = store.get_source("docs", "http://x/a")
    near = store.chunks_of("docs", "http://x/a", [2, 0, 2])

    assert [c.chunk_index for c in detail.chunks] == [0, 2] and detail.source.chunk_count == 2
    assert [c.chunk_index for c in near] == [0, 2]
    first, second = fake.collection.called("fetch_objects")
    assert render(first[2]["filters"]) == ("url", "Equal", "http://x/a")
    assert render(second[2]["filters"]) == (
        "And",
        [("url", "Equal", "http://x/a"), ("chunk_index", "ContainsAny", [0, 2])],
    )


def test_chunks_read_their_anchor_and_objects_stored_before_it_existed_read_none(fake):
    anchored = hit("http://x/a", 1)
    anchored.properties["anchor"] = "install"
    fake.collection.replies["fetch_objects"] = QueryReturn(objects=[anchored, hit("http://x/a", 0)])

    detail = WeaviateStore(fake, dim=3).get_source("docs", "http://x/a")

    assert [(c.heading, c.anchor) for c in detail.chunks] == [("H", ""), ("H", "install")]
    [(_, _, kwargs)] = fake.collection.called("fetch_objects")
    assert "anchor" in kwargs["return_properties"]


def test_list_sources_groups_the_iterated_chunks_by_page(fake):
    fake.collection.replies["iterator"] = [hit("http://x/b", 0), hit("http://x/a", 1), hit("http://x/a", 0)]
    store = WeaviateStore(fake, dim=3)

    sources = store.list_sources("docs")

    assert [(s.url, s.chunk_count) for s in sources] == [("http://x/a", 2), ("http://x/b", 1)]
    [(tenant, _, kwargs)] = fake.collection.called("iterator")
    assert tenant == "docs" and kwargs["include_vector"] is False
    assert "text" not in kwargs["return_properties"]  # listing pages does not download every chunk's text


def test_count_chunks_aggregates_over_the_tenant(fake):
    fake.collection.replies["over_all"] = AggregateReturn(properties={}, total_count=42)

    assert WeaviateStore(fake, dim=3).count_chunks("docs") == 42
    [(tenant, _, kwargs)] = fake.collection.called("over_all")
    assert tenant == "docs" and kwargs == {"total_count": True}


def test_export_yields_batches_with_vectors(fake):
    objects = [hit("http://x/a", i) for i in range(3)]
    for obj in objects:
        obj.vector = {"default": [1.0, 2.0, 3.0]}
    fake.collection.replies["iterator"] = objects

    batches = list(WeaviateStore(fake, dim=3).export("docs", batch_size=2))

    assert [len(b) for b in batches] == [2, 1] and batches[0][0].vector == [1.0, 2.0, 3.0]
    [(_, _, kwargs)] = fake.collection.called("iterator")
    assert kwargs["include_vector"] is True and kwargs["cache_size"] == 2


def test_knowledge_bases_are_the_tenants(fake):
    fake.collection.tenant_names |= {"alpha"}

    assert WeaviateStore(fake, dim=3).knowledge_bases() == ["alpha", "docs"]


def test_connect_parses_the_url_and_sets_timeouts(monkeypatch):
    seen: dict[str, Any] = {}
    monkeypatch.setattr("weaviate.connect_to_custom", lambda **kwargs: seen.update(kwargs) or "client")
    monkeypatch.setattr("ragcord.knowledge.stores.weaviate._check_grpc", lambda *args, **kwargs: None)

    assert connect("https://weaviate.example:8443", grpc_port=50052, api_key="key") == "client"

    assert (seen["http_host"], seen["http_port"], seen["http_secure"]) == ("weaviate.example", 8443, True)
    assert (seen["grpc_host"], seen["grpc_port"], seen["grpc_secure"]) == ("weaviate.example", 50052, True)
    assert seen["auth_credentials"].api_key == "key"
    assert seen["skip_init_checks"] is True  # the client's init checks would also call pypi.org
    timeout = seen["additional_config"].timeout
    assert timeout.init > 0 and timeout.query > 0 and timeout.insert > 0
    connect("http://localhost", grpc_port=50051)
    assert (seen["http_port"], seen["http_secure"], seen["auth_credentials"]) == (80, False, None)
    with pytest.raises(InvalidArgument):
        connect("localhost:8080")


def test_an_unreachable_weaviate_is_a_store_error_that_says_what_to_check():
    settings = Settings(
        _env_file=None,
        store="weaviate",
        weaviate_url=f"http://127.0.0.1:{free_port()}",
        weaviate_api_key="s3cret-key",
    )

    with pytest.raises(StoreError) as raised:
        build_store(settings, dim=3)

    assert "RAGCORD_WEAVIATE_URL" in str(raised.value) and "s3cret" not in str(raised.value)


def test_vectors_of_another_dimension_than_the_knowledge_base_holds_are_refused(fake):
    stored = hit("http://x/a", 0)
    stored.vector = {"default": [0.1, 0.2, 0.3, 0.4]}
    fake.collection.replies["fetch_objects"] = QueryReturn(objects=[stored])
    store = WeaviateStore(fake, dim=3)  # the embedder changed since the knowledge base was crawled

    with pytest.raises(StoreError, match="holds 4-dimension vectors but the embedder makes 3"):
        store.vector_search("docs", [0.1, 0.2, 0.3], 4)
    with pytest.raises(StoreError, match="re-crawl it into a new knowledge base"):
        store.replace_page("docs", "http://x/b", chunks("http://x/b", 1))
    with pytest.raises(StoreError, match="3-dimension"):
        WeaviateStore(fake, dim=3).replace_page("docs", "http://x/c", chunks("http://x/c", 1, dim=2))
    assert fake.collection.called("near_vector") == fake.collection.called("insert_many") == []


def test_removing_a_page_from_a_missing_knowledge_base_creates_nothing(fake):
    WeaviateStore(fake, dim=3).replace_page("new-kb", "http://x/a", [])

    assert fake.collection.created_tenants == [] and fake.collection.calls == []


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("keyword_search", ("docs", "words", 5)),
        ("vector_search", ("docs", [0.1, 0.2, 0.3], 5)),
        ("get_source", ("docs", "http://x/a")),
        ("count_chunks", ("docs",)),
        ("delete_source", ("docs", "http://x/a")),
    ],
)
def test_weaviate_errors_on_every_path_become_store_errors(fake, method, args):
    down = WeaviateQueryError("connection refused", "GRPC search")
    for name in ("bm25", "near_vector", "fetch_objects", "over_all", "delete_many"):
        fake.collection.replies[name] = down
    store = WeaviateStore(fake, dim=3)
    store._dims["docs"] = 3  # dimension known: the failing call is the method's own

    with pytest.raises(StoreError, match="connection refused"):
        getattr(store, method)(*args)
