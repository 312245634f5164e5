"""The fake Weaviate, exercised through the real `weaviate-client` (REST + gRPC) and through WeaviateStore."""

from __future__ import annotations

import dataclasses
import math
import uuid

import pytest
import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery, Sort
from weaviate.exceptions import (
    UnexpectedStatusCodeError,
    WeaviateInsertManyAllFailedError,
    WeaviateQueryError,
)

from ragcord.errors import NotFound, StoreError
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.stores import StoredChunk
from ragcord.knowledge.stores.weaviate import WeaviateStore, connect, schema_properties
from tests.weaviate_fake import FakeWeaviate, running_weaviate

AXES = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]


@pytest.fixture(scope="module")
def fake():
    with running_weaviate() as server:
        yield server


@pytest.fixture(scope="module")
def client(fake: FakeWeaviate):
    client = connect(fake.http_url, grpc_port=fake.grpc_port)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def everything_was_implemented(fake: FakeWeaviate):
    fake.unimplemented.clear()
    yield
    assert fake.unimplemented == []


@pytest.fixture
def name(client: weaviate.WeaviateClient):
    name = f"Docs{uuid.uuid4().hex[:10]}"
    yield name
    client.collections.delete(name)


def create_docs(client: weaviate.WeaviateClient, name: str, *, multi_tenant: bool = True):
    return client.collections.create(
        name,
        properties=[
            Property(name="text", data_type=DataType.TEXT),
            Property(
                name="url", data_type=DataType.TEXT, tokenization=Tokenization.FIELD, index_searchable=False
            ),
            Property(name="n", data_type=DataType.INT),
            Property(name="x", data_type=DataType.NUMBER),
            Property(name="secret", data_type=DataType.TEXT, index_filterable=False, index_searchable=False),
        ],
        multi_tenancy_config=Configure.multi_tenancy(enabled=multi_tenant),
        vector_config=Configure.Vectors.self_provided(
            name="default",
            vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE),
        ),
    )


@pytest.fixture
def docs(client: weaviate.WeaviateClient, name: str):
    """A multi-tenant collection's tenant "kb"."""
    collection = create_docs(client, name)
    collection.tenants.create("kb")
    return collection.with_tenant("kb")


def obj(i: int, text: str = "plain words", *, url: str = "http://x/a", vector: list[float] | None = None):
    return DataObject(
        uuid=uuid.uuid5(uuid.NAMESPACE_URL, f"{url}#{i}"),
        properties={"text": text, "url": url, "n": i, "x": i / 2},
        vector={"default": vector or [1.0, 0.1 * i, 0.0, 0.0]},
    )


def chunks(url: str, n: int, *, text: str = "common words", dim: int = 4) -> list[StoredChunk]:
    return [
        StoredChunk(
            id=chunk_id(url, i),
            url=url,
            title=f"Title of {url}",
            heading="Intro",
            chunk_index=i,
            text=f"{text} {i}",
            content_hash="hash",
            indexed_at=100.0 + i,
            vector=[1.0, 0.1 * i, 0.0, 0.0][:dim] + [0.5] * (dim - 4),
        )
        for i in range(n)
    ]


# ---- REST: meta, schema, tenants


def test_meta_reports_the_pinned_server_version(client: weaviate.WeaviateClient, fake: FakeWeaviate):
    assert fake.http_url.startswith("http://127.0.0.1:")
    assert client.get_meta()["version"] == "1.33.4"
    assert client.is_ready() and client.is_live()


def test_a_created_collection_comes_back_with_the_server_defaults(client: weaviate.WeaviateClient, name: str):
    create_docs(client, name)

    config = client.collections.get(name).config.get()

    assert client.collections.exists(name) and not client.collections.exists("Nothing")
    assert config.multi_tenancy_config.enabled
    assert (config.inverted_index_config.bm25.k1, config.inverted_index_config.bm25.b) == (1.2, 0.75)
    props = {p.name: p for p in config.properties}
    assert props["text"].tokenization == Tokenization.WORD and props["text"].index_searchable
    assert props["url"].tokenization == Tokenization.FIELD and not props["url"].index_searchable
    assert props["n"].data_type == DataType.INT and props["n"].index_filterable
    assert config.vector_config["default"].vector_index_config.distance_metric == VectorDistances.COSINE
    assert name in client.collections.list_all()


def test_properties_can_be_added_but_not_twice(client: weaviate.WeaviateClient, name: str):
    collection = create_docs(client, name)

    collection.config.add_property(Property(name="lang", data_type=DataType.TEXT))

    assert "lang" in {p.name for p in collection.config.get().properties}
    with pytest.raises(weaviate.exceptions.WeaviateInvalidInputError):
        collection.config.add_property(Property(name="lang", data_type=DataType.TEXT))
    with pytest.raises(UnexpectedStatusCodeError) as exc:
        create_docs(client, name)
    assert exc.value.status_code == 422 and "already exists" in str(exc.value)


def test_tenants_are_created_listed_and_checked(client: weaviate.WeaviateClient, name: str):
    collection = create_docs(client, name)

    collection.tenants.create(["one", "two"])
    collection.tenants.create("one")  # creating an existing tenant is a no-op

    assert sorted(collection.tenants.get()) == ["one", "two"]
    assert collection.tenants.exists("one") and not collection.tenants.exists("three")
    assert collection.tenants.get_by_name("two").name == "two"
    assert collection.tenants.get_by_name("three") is None
    collection.tenants.remove("two")
    assert sorted(collection.tenants.get()) == ["one"]


def test_a_multi_tenant_collection_needs_an_existing_tenant(client: weaviate.WeaviateClient, name: str):
    collection = create_docs(client, name)
    collection.tenants.create("kb")

    with pytest.raises(WeaviateQueryError, match="multi-tenancy enabled, but request was without tenant"):
        collection.query.fetch_objects()
    with pytest.raises(WeaviateQueryError, match='tenant not found: "nope"'):
        collection.with_tenant("nope").query.fetch_objects()
    with pytest.raises(WeaviateInsertManyAllFailedError, match="tenant not found"):
        collection.with_tenant("nope").data.insert_many([obj(0)])


def test_a_single_tenant_collection_refuses_a_tenant(client: weaviate.WeaviateClient, name: str):
    collection = create_docs(client, name, multi_tenant=False)
    collection.data.insert_many([obj(0)])

    assert len(collection.query.fetch_objects().objects) == 1
    with pytest.raises(WeaviateQueryError, match="multi-tenancy disabled"):
        collection.with_tenant("kb").query.fetch_objects()
    with pytest.raises(UnexpectedStatusCodeError):
        collection.tenants.create("kb")


def test_collections_delete_removes_schema_and_data(client: weaviate.WeaviateClient):
    collection = create_docs(client, "Gone")
    collection.tenants.create("kb")
    collection.with_tenant("kb").data.insert_many([obj(0)])

    client.collections.delete("Gone")

    assert not client.collections.exists("Gone")
    with pytest.raises(WeaviateQueryError, match="could not find class Gone"):
        collection.with_tenant("kb").query.fetch_objects()


# ---- gRPC: batches


def test_insert_many_reports_each_failed_object(docs):
    docs.data.insert_many([obj(0), obj(1)])
    bad_vector = obj(2, vector=[1.0, 0.0, 0.0])
    bad_int = DataObject(properties={"n": 1.5}, vector={"default": AXES[0]})

    result = docs.data.insert_many([obj(3), bad_vector, bad_int, obj(4)])

    assert result.has_errors and sorted(result.errors) == [1, 2]
    assert result.errors[1].message == (
        "new node has a vector with length 3. Existing nodes have vectors with length 4"
    )
    assert "invalid integer property 'n'" in result.errors[2].message
    assert docs.aggregate.over_all(total_count=True).total_count == 4
    with pytest.raises(WeaviateInsertManyAllFailedError, match="vector with length 2"):
        docs.data.insert_many([obj(5, vector=[1.0, 0.0])])


def test_insert_many_upserts_by_uuid(docs):
    docs.data.insert_many([obj(0, "old text")])
    docs.data.insert_many([obj(0, "new text")])

    objects = docs.query.fetch_objects().objects

    assert [o.properties["text"] for o in objects] == ["new text"]
    assert objects[0].properties["n"] == 0 and isinstance(objects[0].properties["x"], float)


def test_unknown_properties_are_added_by_auto_schema(docs, client: weaviate.WeaviateClient, name: str):
    docs.data.insert_many([DataObject(properties={"lang": "en", "tags": ["a", "b"]})])

    props = {p.name: p.data_type for p in client.collections.get(name).config.get().properties}

    assert props["lang"] == DataType.TEXT and props["tags"] == DataType.TEXT_ARRAY
    assert docs.query.fetch_objects().objects[0].properties["tags"] == ["a", "b"]


def test_delete_many_deletes_what_the_filter_matches(docs):
    docs.data.insert_many([obj(i) for i in range(5)] + [obj(0, url="http://x/b")])
    stale = Filter.by_property("url").equal("http://x/a") & Filter.by_property("n").greater_than(2)

    dry = docs.data.delete_many(where=stale, dry_run=True)
    result = docs.data.delete_many(where=stale, verbose=True)

    assert (dry.matches, docs.aggregate.over_all(total_count=True).total_count) == (2, 4)
    assert (result.matches, result.successful, result.failed) == (2, 2, 0)
    assert {o.uuid for o in result.objects} == {obj(3).uuid, obj(4).uuid}
    assert docs.aggregate.over_all(total_count=True).total_count == 4
    assert docs.data.delete_many(where=stale).matches == 0


def test_aggregate_counts_per_tenant(client: weaviate.WeaviateClient, name: str):
    collection = create_docs(client, name)
    collection.tenants.create(["one", "two"])
    collection.with_tenant("one").data.insert_many([obj(i) for i in range(3)])

    assert collection.with_tenant("one").aggregate.over_all(total_count=True).total_count == 3
    assert collection.with_tenant("two").aggregate.over_all(total_count=True).total_count == 0
    n_above_0 = collection.with_tenant("one").aggregate.over_all(
        filters=Filter.by_property("n").greater_than(0)
    )
    assert n_above_0.total_count == 2


# ---- gRPC: queries


def test_fetch_objects_is_in_uuid_order_without_filters_and_in_write_order_with_them(docs):
    objects = [obj(i) for i in range(6)]
    docs.data.insert_many(objects[3:] + objects[:3])

    unfiltered = docs.query.fetch_objects(limit=4)
    filtered = docs.query.fetch_objects(filters=Filter.by_property("url").equal("http://x/a"))

    assert [o.uuid for o in unfiltered.objects] == sorted(o.uuid for o in objects)[:4]
    assert [o.properties["n"] for o in filtered.objects] == [3, 4, 5, 0, 1, 2]


def test_the_iterator_walks_several_cache_pages_in_uuid_order(docs):
    objects = [obj(i) for i in range(25)]
    docs.data.insert_many(objects)

    seen = [o.uuid for o in docs.iterator(cache_size=10, include_vector=True)]

    assert seen == sorted(o.uuid for o in objects)
    first = next(iter(docs.iterator(include_vector=True, return_properties=["n"])))
    assert set(first.properties) == {"n"} and len(first.vector["default"]) == 4


def test_return_properties_metadata_and_vectors(docs):
    docs.data.insert_many([obj(1)])

    full = docs.query.fetch_objects(
        include_vector=True, return_metadata=MetadataQuery(creation_time=True)
    ).objects[0]
    bare = docs.query.fetch_objects(return_properties=["text"]).objects[0]

    assert full.properties == {"text": "plain words", "url": "http://x/a", "n": 1, "x": 0.5}
    assert full.vector["default"] == pytest.approx([1.0, 0.1, 0.0, 0.0])
    assert full.metadata.creation_time is not None
    assert bare.properties == {"text": "plain words"} and bare.vector == {}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (Filter.by_property("url").equal("http://x/b"), [10]),
        (Filter.by_property("url").equal("http://x"), []),  # field tokenization: the whole value
        (Filter.by_property("text").equal("Brown FOX"), [1, 2]),  # word tokenization: every token present
        (Filter.by_property("n").greater_than(1), [2, 3, 10]),
        (Filter.by_property("n").less_or_equal(1), [0, 1]),
        (Filter.by_property("n").not_equal(1), [0, 2, 3, 10]),
        (Filter.by_property("x").greater_or_equal(1.5), [3, 10]),
        (Filter.by_property("n").contains_any([0, 3, 99]), [0, 3]),
        (Filter.by_property("text").contains_any(["lazy", "quick"]), [1, 3]),
        (Filter.by_property("text").like("qui*"), [1]),
        (Filter.by_property("url").equal("http://x/a") & Filter.by_property("n").greater_than(1), [2, 3]),
        (Filter.by_property("n").equal(0) | Filter.by_property("url").equal("http://x/b"), [0, 10]),
        (Filter.not_(Filter.by_property("url").equal("http://x/a")), [10]),
        (Filter.by_id().equal(uuid.uuid5(uuid.NAMESPACE_URL, "http://x/a#2")), [2]),
    ],
)
def test_filters(docs, where, expected):
    docs.data.insert_many(
        [
            obj(0, "nothing here"),
            obj(1, "the quick brown fox"),
            obj(2, "a brown dog and a fox"),
            obj(3, "the lazy dog"),
            obj(10, "elsewhere", url="http://x/b"),
        ]
    )

    result = docs.query.fetch_objects(filters=where)

    assert sorted(o.properties["n"] for o in result.objects) == expected


def test_filters_are_validated_like_the_server_does(docs):
    docs.data.insert_many([obj(0)])

    with pytest.raises(WeaviateQueryError, match="indexFilterable"):
        docs.query.fetch_objects(filters=Filter.by_property("secret").equal("x"))
    with pytest.raises(WeaviateQueryError, match='cannot use "valueNumber" on type "int"'):
        docs.query.fetch_objects(filters=Filter.by_property("n").equal(1.0))
    with pytest.raises(WeaviateQueryError, match="no such prop with name 'nope'"):
        docs.query.fetch_objects(filters=Filter.by_property("nope").equal("x"))


def bm25_score(freq: int, length: int, average: float, docs: int, with_term: int) -> float:
    idf = math.log(1 + (docs - with_term + 0.5) / (with_term + 0.5))
    return idf * freq / (freq + 1.2 * (1 - 0.75 + 0.75 * length / average))


def test_bm25_puts_the_rare_word_first_with_weaviates_scores(docs):
    common = [obj(i, "install the package with pip") for i in range(3)]  # 5 tokens each
    rare = obj(3, "configure the flux capacitor with pip")  # 6 tokens
    docs.data.insert_many([*common, rare])

    result = docs.query.bm25(
        "the capacitor pip", query_properties=["text"], return_metadata=MetadataQuery(score=True)
    )

    average = (3 * 5 + 6) / 4
    pip = [bm25_score(1, n, average, 4, 4) for n in (6, 5, 5, 5)]
    assert [o.properties["n"] for o in result.objects][0] == 3
    assert result.objects[0].metadata.score == pytest.approx(
        bm25_score(1, 6, average, 4, 1) + pip[0], rel=1e-5
    )
    assert [o.metadata.score for o in result.objects[1:]] == pytest.approx(pip[1:], rel=1e-5)
    assert docs.query.bm25("the with").objects == []  # stop words only: nothing to match
    assert len(docs.query.bm25("capacitor", filters=Filter.by_property("n").less_than(3)).objects) == 0
    with pytest.raises(WeaviateQueryError, match="not indexed as searchable"):
        docs.query.bm25("x", query_properties=["url"])


def test_near_vector_orders_by_cosine_distance(docs):
    docs.data.insert_many([obj(i, vector=vector) for i, vector in enumerate(AXES)])

    result = docs.query.near_vector(
        [0.2, 0.0, 0.9, 0.1], target_vector="default", return_metadata=MetadataQuery(distance=True), limit=4
    )

    assert [o.properties["n"] for o in result.objects] == [2, 0, 3, 1]
    assert result.objects[0].metadata.distance == pytest.approx(1 - 0.9 / 0.86**0.5, abs=1e-6)
    assert result.objects[-1].metadata.distance == pytest.approx(1.0, abs=1e-6)
    near = docs.query.near_vector([0.2, 0.0, 0.9, 0.1], distance=0.5)
    assert [o.properties["n"] for o in near.objects] == [2]
    with pytest.raises(WeaviateQueryError, match="vector lengths don't match"):
        docs.query.near_vector([1.0, 0.0])


@pytest.fixture
def ranked_docs(docs):
    vectors = [[1.0, 0.0, 0.0, 0.0], [0.8, 0.6, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.6, 0.8, 0.0, 0.0]]
    texts = ["apple banana", "apple apple cherry", "durian", "banana"]
    docs.data.insert_many(
        [obj(i, text, vector=v) for i, (text, v) in enumerate(zip(texts, vectors, strict=True))]
    )
    return docs


def scores_of(result) -> dict[int, float]:
    return {o.properties["n"]: o.metadata.score for o in result.objects}


def test_hybrid_relative_score_fusion_min_max_normalises_each_list(ranked_docs):
    query, vector = "apple", [1.0, 0.0, 0.0, 0.0]
    keyword = scores_of(ranked_docs.query.bm25(query, return_metadata=MetadataQuery(score=True)))
    near = ranked_docs.query.near_vector(vector, return_metadata=MetadataQuery(distance=True))
    similarity = {o.properties["n"]: 1 - o.metadata.distance for o in near.objects}

    result = ranked_docs.query.hybrid(
        query, vector=vector, alpha=0.3, fusion_type=HybridFusion.RELATIVE_SCORE, target_vector="default",
        query_properties=["text"], return_metadata=MetadataQuery(score=True),
    )  # fmt: skip

    def normalised(scores: dict[int, float]) -> dict[int, float]:
        low, high = min(scores.values()), max(scores.values())
        return {n: (s - low) / (high - low) for n, s in scores.items()}

    kw, vec = normalised(keyword), normalised(similarity)
    expected = {n: 0.3 * vec[n] + 0.7 * kw.get(n, 0.0) for n in vec}
    assert scores_of(result) == pytest.approx(expected, abs=1e-6)
    assert [o.properties["n"] for o in result.objects] == sorted(expected, key=lambda n: -expected[n])


def test_hybrid_ranked_fusion_adds_weighted_reciprocal_ranks(ranked_docs):
    result = ranked_docs.query.hybrid(
        "banana", vector=[0.0, 1.0, 0.0, 0.0], alpha=0.25, fusion_type=HybridFusion.RANKED,
        target_vector="default", return_metadata=MetadataQuery(score=True),
    )  # fmt: skip

    # keyword ranks: 0 "banana" (n=3, shorter), 1 "apple banana" (n=0); vector ranks: 2, 3, 1, 0
    expected = {
        3: 0.75 / 60 + 0.25 / 61,
        0: 0.75 / 61 + 0.25 / 63,
        2: 0.25 / 60,
        1: 0.25 / 62,
    }
    assert scores_of(result) == pytest.approx(expected, rel=1e-6)
    assert [o.properties["n"] for o in result.objects] == [3, 0, 2, 1]


def test_hybrid_without_a_vector_needs_alpha_zero(ranked_docs):
    keyword_only = ranked_docs.query.hybrid("durian", alpha=0.0, return_metadata=MetadataQuery(score=True))

    assert [o.properties["n"] for o in keyword_only.objects] == [2]
    with pytest.raises(WeaviateQueryError, match="needs a vector"):
        ranked_docs.query.hybrid("durian", alpha=0.5)


def test_unimplemented_features_fail_loudly(
    docs, fake: FakeWeaviate, client: weaviate.WeaviateClient, name: str
):
    with pytest.raises(WeaviateQueryError, match="does not implement sorting"):
        docs.query.fetch_objects(sort=Sort.by_property("n"))
    with pytest.raises(UnexpectedStatusCodeError) as exc:
        client.collections.get(name).config.get_shards()
    assert exc.value.status_code == 501
    assert len(fake.unimplemented) == 2
    fake.unimplemented.clear()


# ---- WeaviateStore against the fake


def test_the_store_runs_against_the_fake(client: weaviate.WeaviateClient, name: str):
    store = WeaviateStore(client, dim=4, collection=name)
    store.replace_page("kb", "http://x/a", chunks("http://x/a", 4, text="install the package with pip"))
    store.replace_page("kb", "http://x/b", chunks("http://x/b", 2, text="configure the flux capacitor"))
    store.replace_page("kb", "http://x/a", chunks("http://x/a", 3, text="install the package with pip"))

    assert store.count_chunks("kb") == 5 and store.knowledge_bases() == ["kb"]
    assert [(s.url, s.chunk_count) for s in store.list_sources("kb")] == [
        ("http://x/a", 3),
        ("http://x/b", 2),
    ]
    assert store.keyword_search("kb", "capacitor", 3)[0].chunk.url == "http://x/b"
    assert store.vector_search("kb", [1.0, 0.2, 0.0, 0.0], 1)[0].chunk.id == chunk_id("http://x/a", 2)
    assert [c.chunk_index for c in store.chunks_of("kb", "http://x/a", [2, 0, 7])] == [0, 2]
    exported = [chunk for batch in store.export("kb", batch_size=2) for chunk in batch]
    assert len(exported) == 5 and all(len(c.vector) == 4 for c in exported)
    assert store.delete_source("kb", "http://x/a") == 3
    with pytest.raises(NotFound):
        store.get_source("kb", "http://x/a")
    WeaviateStore(client, dim=4, collection=name)  # an existing collection is reused


def test_a_collection_from_before_anchors_gains_the_property_and_keeps_its_chunks(
    client: weaviate.WeaviateClient, name: str
):
    # Given a collection and a page written by the version without anchors
    old = client.collections.create(
        name,
        properties=[p for p in schema_properties() if p.name != "anchor"],
        multi_tenancy_config=Configure.multi_tenancy(enabled=True),
        vector_config=Configure.Vectors.self_provided(name="default"),
    )
    old.tenants.create("kb")
    old_page = chunks("http://x/old", 2)
    old.with_tenant("kb").data.insert_many(
        [
            DataObject(
                uuid=c.id,
                properties={
                    k: v for k, v in dataclasses.asdict(c).items() if k not in ("id", "vector", "anchor")
                },
                vector={"default": c.vector},
            )
            for c in old_page
        ]
    )

    # When the current store opens it and writes a page with anchors
    store = WeaviateStore(client, dim=4, collection=name)
    new_page = [dataclasses.replace(c, anchor=f"part-{c.chunk_index}") for c in chunks("http://x/new", 2)]
    store.replace_page("kb", "http://x/new", new_page)

    # Then the old page reads without anchors and the new one with its own
    assert "anchor" in {p.name for p in old.config.get().properties}
    assert [c.anchor for c in store.get_source("kb", "http://x/old").chunks] == ["", ""]
    assert [c.anchor for c in store.get_source("kb", "http://x/new").chunks] == ["part-0", "part-1"]
    found = store.keyword_search("kb", "common", 4) + store.vector_search("kb", AXES[0], 4)
    assert {(r.chunk.url, r.chunk.anchor) for r in found} == {
        ("http://x/old", ""),
        ("http://x/new", "part-0"),
        ("http://x/new", "part-1"),
    }


def test_the_store_reports_the_servers_batch_errors(client: weaviate.WeaviateClient, name: str):
    store = WeaviateStore(client, dim=4, collection=name)
    store.replace_page("kb", "http://x/a", chunks("http://x/a", 2))
    # Our own checks stop vectors of the wrong length before they are sent; the server refuses what
    # slips past them object by object, e.g. a value of the wrong type.
    with pytest.raises(StoreError, match="do not all carry 4-dimension vectors"):
        store.replace_page("kb", "http://x/b", chunks("http://x/b", 2, dim=5))
    mixed = chunks("http://x/c", 3)
    mixed[1] = dataclasses.replace(mixed[1], chunk_index=1.5)  # type: ignore[arg-type]

    with pytest.raises(StoreError, match=r"1 of 3 chunks of http://x/c were not stored") as raised:
        store.replace_page("kb", "http://x/c", mixed)

    assert "invalid integer property 'chunk_index'" in str(raised.value)
    assert store.count_chunks("kb") == 2  # none of the page, rather than part of it
