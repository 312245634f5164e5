"""Store backends behind one interface (`Store`); `build_store` picks one from settings."""

from __future__ import annotations

from ragcord.knowledge.stores.base import ScoredChunk, SourceDetail, SourceInfo, Store, StoredChunk
from ragcord.settings import Settings

__all__ = ["ScoredChunk", "SourceDetail", "SourceInfo", "Store", "StoredChunk", "build_store"]


def build_store(settings: Settings, *, dim: int | None) -> Store:
    if settings.store == "weaviate":
        raise NotImplementedError("RAGCORD_STORE=weaviate is not available yet; use lancedb")
    from ragcord.knowledge.stores.lancedb import LanceDBStore

    return LanceDBStore(settings.lancedb_dir, dim=dim)
