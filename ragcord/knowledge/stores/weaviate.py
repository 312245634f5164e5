"""Weaviate: one multi-tenant collection, one tenant per knowledge base, BM25 on text + our own vectors."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import grpc
import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.data import DataObject
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.classes.tenants import Tenant
from weaviate.exceptions import WeaviateBaseError, WeaviateInsertManyAllFailedError

from ragcord.errors import InvalidArgument, NotFound, StoreError
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.stores.base import ScoredChunk, SourceDetail, SourceInfo, StoredChunk
from ragcord.urls import validate_kb_name

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

VECTOR = "default"  # the collection's one named vector, which self_provided() without a name also gets
# Weaviate returns at most QUERY_MAXIMUM_RESULTS (10,000 by default) objects per query.
PAGE_LIMIT = 10_000
ERRORS_SHOWN = 3
GRPC_READY_SECONDS = 5.0
_PROPERTIES = ["url", "title", "heading", "chunk_index", "text", "content_hash", "indexed_at", "anchor"]
_SOURCE_PROPERTIES = [name for name in _PROPERTIES if name != "text"]
_WORD = re.compile(r"\w+", re.UNICODE)


def schema_properties() -> list[Property]:
    """The collection's properties: only `text` is BM25-searchable; `url` is filtered on as a whole."""
    return [
        Property(
            name="url",
            data_type=DataType.TEXT,
            tokenization=Tokenization.FIELD,
            index_searchable=False,
            index_filterable=True,
        ),
        Property(name="title", data_type=DataType.TEXT, index_searchable=False, index_filterable=False),
        Property(name="heading", data_type=DataType.TEXT, index_searchable=False, index_filterable=False),
        Property(name="chunk_index", data_type=DataType.INT, index_filterable=True),
        Property(name="text", data_type=DataType.TEXT, index_searchable=True, index_filterable=False),
        Property(
            name="content_hash", data_type=DataType.TEXT, index_searchable=False, index_filterable=False
        ),
        Property(name="indexed_at", data_type=DataType.NUMBER, index_filterable=False),
        Property(name="anchor", data_type=DataType.TEXT, index_searchable=False, index_filterable=False),
    ]


def connect(url: str, *, grpc_port: int = 50051, api_key: str | None = None) -> weaviate.WeaviateClient:
    """A connected client for the Weaviate at `url` (REST) and `grpc_port` on the same host.

    The client's own start-up checks are skipped: besides pinging gRPC they ask pypi.org for a newer
    client, which a production host without internet access would wait on at every start. gRPC is checked
    here instead: the client only uses it on the first search, where a wrong port would cost a minute
    of retries.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"weaviate_url {url!r} is not valid: use http(s)://host[:port]")
    secure = parts.scheme == "https"
    try:
        client = weaviate.connect_to_custom(
            http_host=parts.hostname,
            http_port=parts.port or (443 if secure else 80),
            http_secure=secure,
            grpc_host=parts.hostname,
            grpc_port=grpc_port,
            grpc_secure=secure,
            auth_credentials=Auth.api_key(api_key) if api_key else None,
            additional_config=AdditionalConfig(timeout=Timeout(init=10, query=30, insert=120)),
            skip_init_checks=True,
        )
    except WeaviateBaseError as exc:
        raise StoreError(
            f"could not connect to Weaviate at {url} (gRPC port {grpc_port}): {exc}; "
            "check RAGCORD_WEAVIATE_URL and RAGCORD_WEAVIATE_GRPC_PORT"
        ) from exc
    try:
        _check_grpc(parts.hostname, grpc_port, secure=secure)
    except StoreError:
        client.close()
        raise
    return client


def _check_grpc(host: str, port: int, *, secure: bool) -> None:
    target = f"{host}:{port}"
    channel = (
        grpc.secure_channel(target, grpc.ssl_channel_credentials())
        if secure
        else grpc.insecure_channel(target)
    )
    try:
        grpc.channel_ready_future(channel).result(timeout=GRPC_READY_SECONDS)
    except grpc.FutureTimeoutError:
        raise StoreError(
            f"Weaviate's gRPC port {target} does not answer; check RAGCORD_WEAVIATE_GRPC_PORT"
        ) from None
    finally:
        channel.close()


def _chunk(obj: Any, *, with_vector: bool = False) -> StoredChunk:
    props = obj.properties
    vector = obj.vector.get(VECTOR) if with_vector and obj.vector else None
    return StoredChunk(
        id=str(obj.uuid),
        url=props.get("url") or "",
        title=props.get("title") or "",
        heading=props.get("heading") or "",
        chunk_index=int(props.get("chunk_index") or 0),
        text=props.get("text") or "",
        content_hash=props.get("content_hash") or "",
        indexed_at=float(props.get("indexed_at") or 0.0),
        vector=list(vector) if vector else [],
        anchor=props.get("anchor") or "",  # objects written before the property existed have none
    )


def _source_info(url: str, chunks: Sequence[StoredChunk]) -> SourceInfo:
    return SourceInfo(
        url=url,
        title=chunks[0].title,
        chunk_count=len(chunks),
        content_hash=chunks[0].content_hash,
        indexed_at=max(c.indexed_at for c in chunks),
    )


def _of_url(url: str) -> Any:
    return Filter.by_property("url").equal(url)


def _known_tenant(args: tuple[object, ...]) -> tuple[WeaviateStore, str] | None:
    """The (store, knowledge base) a method is called with, when the store has seen that knowledge base."""
    store, kb = args[0], args[1] if len(args) > 1 else None
    if isinstance(store, WeaviateStore) and isinstance(kb, str) and kb in store._tenants:
        return store, kb
    return None


def _store_errors(method: Callable[P, T]) -> Callable[P, T]:
    """Weaviate's own errors (connection, query, tenant) leave the store as StoreError.

    A call that failed on a knowledge base this store had seen before is tried once more after
    forgetting it: the tenant may have been dropped by another process (DeleteKnowledgeBase).
    """

    @functools.wraps(method)
    def translated(*args: P.args, **kwargs: P.kwargs) -> T:
        known = _known_tenant(args)
        try:
            return method(*args, **kwargs)
        except WeaviateBaseError as exc:
            if known is None:
                raise StoreError(f"Weaviate failed in {method.__name__}: {exc}") from exc
            store, kb = known
            store._forget(kb)
        try:
            return method(*args, **kwargs)
        except WeaviateBaseError as exc:
            raise StoreError(f"Weaviate failed in {method.__name__}: {exc}") from exc

    return translated


def _not_stored(kb: str, url: str, failed: int, total: int, messages: list[str]) -> StoreError:
    return StoreError(
        f"{failed} of {total} chunks of {url} were not stored in knowledge base {kb!r}: "
        + "; ".join(messages[:ERRORS_SHOWN])
    )


class WeaviateStore:
    def __init__(
        self, client: weaviate.WeaviateClient, *, dim: int | None, collection: str = "RagcordChunk"
    ) -> None:
        self.client = client
        self.dim = dim
        self.name = collection
        self._tenants: set[str] = (
            set()
        )  # known to exist (forgotten on any error: another process may drop one)
        self._dims: dict[str, int] = {}  # vector length each tenant holds
        self.ensure_schema()
        self.collection = client.collections.get(collection)

    def ensure_schema(self) -> None:
        """Create the collection, or add the properties an older version of it lacks (never drops any)."""
        wanted = schema_properties()
        try:
            if not self.client.collections.exists(self.name):
                try:
                    self.client.collections.create(
                        self.name,
                        properties=wanted,
                        # Operators may offload idle guilds' tenants (COLD/FROZEN); a question
                        # or a crawl brings one back.
                        multi_tenancy_config=Configure.multi_tenancy(
                            enabled=True, auto_tenant_activation=True
                        ),
                        vector_config=Configure.Vectors.self_provided(
                            name=VECTOR,
                            vector_index_config=Configure.VectorIndex.hnsw(
                                distance_metric=VectorDistances.COSINE
                            ),
                        ),
                    )
                    return
                except WeaviateBaseError:
                    # Another process may have created it in the meantime; then migrate as below.
                    if not self.client.collections.exists(self.name):
                        raise
            collection = self.client.collections.get(self.name)
            config = collection.config.get()
            if not config.multi_tenancy_config.enabled:
                raise StoreError(
                    f"Weaviate collection {self.name!r} exists without multi-tenancy; "
                    "use another collection name"
                )
            have = {prop.name for prop in config.properties}
            for prop in wanted:
                if prop.name not in have:
                    log.info("adding property %s to Weaviate collection %s", prop.name, self.name)
                    collection.config.add_property(prop)
        except WeaviateBaseError as exc:
            raise StoreError(f"could not prepare Weaviate collection {self.name!r}: {exc}") from exc

    def _has_tenant(self, kb: str) -> bool:
        validate_kb_name(kb)
        if kb in self._tenants:
            return True
        if self.collection.tenants.exists(kb):
            self._tenants.add(kb)
            return True
        return False

    def _tenant(self, kb: str, *, create: bool) -> Any:
        """The kb's tenant view of the collection (None when it does not exist and `create` is false)."""
        if not self._has_tenant(kb):
            if not create:
                return None
            try:
                self.collection.tenants.create(Tenant(name=kb))
            except WeaviateBaseError:
                if not self.collection.tenants.exists(kb):  # else another writer created it first
                    raise
            self._tenants.add(kb)
        return self.collection.with_tenant(kb)

    def _forget(self, kb: str) -> None:
        self._tenants.discard(kb)
        self._dims.pop(kb, None)

    def _stored_dim(self, kb: str, tenant: Any) -> int | None:
        """The length of the vectors the kb already holds (None while it holds none); read once."""
        if kb not in self._dims:
            result = tenant.query.fetch_objects(limit=1, include_vector=True, return_properties=[])
            vectors = [obj.vector.get(VECTOR) for obj in result.objects if obj.vector]
            if not vectors or not vectors[0]:
                return None
            self._dims[kb] = len(vectors[0])
        return self._dims[kb]

    def _check_dim(self, kb: str, tenant: Any, length: int) -> None:
        stored = self._stored_dim(kb, tenant)
        if stored is not None and stored != length:
            raise StoreError(
                f"knowledge base {kb!r} holds {stored}-dimension vectors but the embedder makes {length}; "
                "re-crawl it into a new knowledge base"
            )

    def replace_page(self, kb: str, url: str, chunks: list[StoredChunk]) -> None:
        # Weaviate has no transactions: upsert the new chunks first, then drop the ones past the end, so
        # a reader sees old or new chunks of the page but never none.
        try:
            tenant = self._tenant(kb, create=bool(chunks))
            if tenant is None:  # removing a page from a knowledge base that does not exist
                return
            if not chunks:
                tenant.data.delete_many(where=_of_url(url))
                return
            vectors = [list(chunk.vector) for chunk in chunks] if self.dim else []
            if vectors:
                if {len(vector) for vector in vectors} != {self.dim}:
                    raise StoreError(f"chunks of {url} do not all carry {self.dim}-dimension vectors")
                self._check_dim(kb, tenant, len(vectors[0]))  # (= self.dim, checked just above)
            objects = [
                DataObject(
                    uuid=chunk_id(url, chunk.chunk_index),
                    properties={name: getattr(chunk, name) for name in _PROPERTIES},
                    vector={VECTOR: vectors[i]} if vectors else None,
                )
                for i, chunk in enumerate(chunks)
            ]
            try:
                result = tenant.data.insert_many(objects)
            except WeaviateInsertManyAllFailedError as exc:
                # The client raises instead of returning errors when every object failed.
                messages = str(exc).partition("errors: ")[2].splitlines() or [str(exc)]
                raise _not_stored(kb, url, len(objects), len(objects), messages) from exc
            if result.has_errors:
                # Some chunks are new, some old or missing: serve none of this page rather than a mix.
                # The crawl retries the page, which stores it whole again.
                tenant.data.delete_many(where=_of_url(url))
                messages = [error.message for _, error in sorted(result.errors.items())]
                raise _not_stored(kb, url, len(messages), len(objects), messages)
            # Not only the ones past the end: a page may leave chunks out (those a copy repeats).
            kept = [str(obj.uuid) for obj in objects]
            tenant.data.delete_many(where=_of_url(url) & Filter.by_id().contains_none(kept))
        except StoreError:
            self._forget(kb)  # e.g. "tenant not found" for every object: another process dropped it
            raise
        except WeaviateBaseError as exc:
            self._forget(kb)
            raise StoreError(f"could not store {url} in knowledge base {kb!r}: {exc}") from exc

    @_store_errors
    def remove_chunks(self, kb: str, url: str, indexes: list[int]) -> None:
        tenant = self._tenant(kb, create=False)
        if tenant is None or not indexes:
            return
        ids = [chunk_id(url, i) for i in sorted(set(indexes))]
        result = tenant.data.delete_many(where=Filter.by_id().contains_any(ids))
        if result.failed:
            raise StoreError(f"{result.failed} of {result.matches} chunks of {url} could not be deleted")

    @_store_errors
    def delete_source(self, kb: str, url: str) -> int:
        tenant = self._tenant(kb, create=False)
        if tenant is None:
            raise NotFound(f"knowledge base {kb!r} does not exist")
        result = tenant.data.delete_many(where=_of_url(url))
        if result.matches == 0:
            raise NotFound(f"{url} is not in knowledge base {kb!r}; ListSources shows what is")
        if result.failed:
            raise StoreError(f"{result.failed} of {result.matches} chunks of {url} could not be deleted")
        return int(result.matches)

    def _iterate(
        self,
        kb: str,
        *,
        with_vector: bool = False,
        batch: int = 1000,
        properties: list[str] = _PROPERTIES,
    ) -> Iterator[StoredChunk]:
        tenant = self._tenant(kb, create=False)
        if tenant is None:
            return
        for obj in tenant.iterator(
            include_vector=with_vector, return_properties=properties, cache_size=batch
        ):
            yield _chunk(obj, with_vector=with_vector)

    def _fetch(self, kb: str, filters: Any) -> list[StoredChunk]:
        tenant = self._tenant(kb, create=False)
        if tenant is None:
            return []
        result = tenant.query.fetch_objects(filters=filters, limit=PAGE_LIMIT, return_properties=_PROPERTIES)
        return sorted((_chunk(obj) for obj in result.objects), key=lambda c: c.chunk_index)

    @_store_errors
    def list_sources(self, kb: str) -> list[SourceInfo]:
        pages: dict[str, list[StoredChunk]] = {}
        for chunk in self._iterate(kb, properties=_SOURCE_PROPERTIES):  # the text stays on the server
            pages.setdefault(chunk.url, []).append(chunk)
        for chunks in pages.values():
            chunks.sort(key=lambda c: c.chunk_index)
        return [_source_info(url, chunks) for url, chunks in sorted(pages.items())]

    @_store_errors
    def get_source(self, kb: str, url: str) -> SourceDetail:
        chunks = self._fetch(kb, _of_url(url))
        if not chunks:
            raise NotFound(f"{url} is not in knowledge base {kb!r}; ListSources shows what is")
        return SourceDetail(source=_source_info(url, chunks), chunks=chunks)

    @_store_errors
    def count_chunks(self, kb: str) -> int:
        tenant = self._tenant(kb, create=False)
        if tenant is None:
            return 0
        return int(tenant.aggregate.over_all(total_count=True).total_count or 0)

    @_store_errors
    def keyword_search(self, kb: str, query: str, k: int, *, source: str | None = None) -> list[ScoredChunk]:
        tenant = self._tenant(kb, create=False)
        if tenant is None or not _WORD.search(query):
            return []
        result = tenant.query.bm25(
            query,
            query_properties=["text"],
            limit=k,
            filters=_of_url(source) if source else None,
            return_metadata=MetadataQuery(score=True),
            return_properties=_PROPERTIES,
        )
        return [ScoredChunk(_chunk(obj), float(obj.metadata.score or 0.0)) for obj in result.objects]

    @_store_errors
    def vector_search(
        self, kb: str, vector: list[float], k: int, *, source: str | None = None
    ) -> list[ScoredChunk]:
        tenant = self._tenant(kb, create=False)
        if tenant is None or not vector or not self.dim:
            return []
        self._check_dim(kb, tenant, len(vector))
        result = tenant.query.near_vector(
            list(vector),
            target_vector=VECTOR,
            limit=k,
            filters=_of_url(source) if source else None,
            return_metadata=MetadataQuery(distance=True),
            return_properties=_PROPERTIES,
        )
        return [ScoredChunk(_chunk(obj), 1.0 - float(obj.metadata.distance)) for obj in result.objects]

    @_store_errors
    def chunks_of(self, kb: str, url: str, indexes: list[int]) -> list[StoredChunk]:
        if not indexes:
            return []
        wanted = sorted({int(i) for i in indexes})
        return self._fetch(kb, _of_url(url) & Filter.by_property("chunk_index").contains_any(wanted))

    @_store_errors
    def chunks_at(self, kb: str, positions: Mapping[str, Collection[int]]) -> list[StoredChunk]:
        pages = [
            _of_url(url) & Filter.by_property("chunk_index").contains_any(sorted({int(i) for i in found}))
            for url, found in sorted(positions.items())
            if found
        ]
        if not pages:
            return []
        chunks = self._fetch(kb, pages[0] if len(pages) == 1 else Filter.any_of(pages))
        return sorted(chunks, key=lambda c: (c.url, c.chunk_index))

    @_store_errors
    def knowledge_bases(self) -> list[str]:
        return sorted(self.collection.tenants.get())

    def export(self, kb: str, *, batch_size: int = 1000) -> Iterator[list[StoredChunk]]:
        try:
            if not self._has_tenant(kb):
                raise NotFound(f"knowledge base {kb!r} does not exist")
            batch: list[StoredChunk] = []
            for chunk in self._iterate(kb, with_vector=bool(self.dim), batch=batch_size):
                batch.append(chunk)
                if len(batch) == batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch
        except WeaviateBaseError as exc:
            raise StoreError(f"could not export knowledge base {kb!r} from Weaviate: {exc}") from exc

    def optimize(self, kb: str) -> None:
        """Nothing to do: Weaviate updates its inverted and vector indexes on every write."""

    @_store_errors
    def drop_knowledge_base(self, kb: str) -> int:
        tenant = self._tenant(kb, create=False)
        if tenant is None:
            raise NotFound(f"knowledge base {kb!r} does not exist")
        count = int(tenant.aggregate.over_all(total_count=True).total_count or 0)
        self.collection.tenants.remove([kb])
        self._forget(kb)
        return count

    def close(self) -> None:
        self.client.close()
