"""Store backends (SQLite or LanceDB embedded, Weaviate) behind one interface (`Store`); `build_store`
picks one from settings."""

from __future__ import annotations

from ragcord.errors import StoreError
from ragcord.knowledge.stores.base import ScoredChunk, SourceDetail, SourceInfo, Store, StoredChunk
from ragcord.settings import Settings

__all__ = ["ScoredChunk", "SourceDetail", "SourceInfo", "Store", "StoredChunk", "build_store"]


def build_store(settings: Settings, *, dim: int | None) -> Store:
    if settings.store == "weaviate":
        from ragcord.knowledge.stores.weaviate import WeaviateStore, connect

        api_key = settings.weaviate_api_key.get_secret_value() if settings.weaviate_api_key else None
        client = connect(settings.weaviate_url, grpc_port=settings.weaviate_grpc_port, api_key=api_key)
        try:
            return WeaviateStore(client, dim=dim, collection=settings.weaviate_collection)
        except BaseException:
            client.close()
            raise
    if settings.store == "sqlite":
        from ragcord.knowledge.stores.sqlite import SQLiteStore

        return SQLiteStore(settings.sqlite_path, dim=dim)
    try:
        from ragcord.knowledge.stores.lancedb import LanceDBStore  # (pyarrow and lancedb: only when chosen)
    except ImportError as exc:  # an optional extra: a small install leaves it out
        raise StoreError(
            f"RAGCORD_STORE=lancedb needs the lancedb extra ({exc}): install it with "
            "pip install 'ragcord[lancedb]', or set RAGCORD_STORE=sqlite"
        ) from exc
    return LanceDBStore(settings.lancedb_dir, dim=dim)
