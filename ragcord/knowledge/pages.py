"""What a knowledge base knows of each page it holds, for incremental re-crawls (no store involved).

Keys (P = settings.key_prefix, KB = knowledge base name):
  P:kb:{KB}:pages    hash: url -> the page's record (JSON; `z` + zlib-compressed JSON when it is large)
  P:kb:{KB}:texts    hash: text hash -> the url of the page holding that text (the duplicate check's)
  P:kb:{KB}:furniture  set: hashes of the blocks the last crawl that counted enough pages found to be site
                     furniture (`knowledge/furniture.py`): a re-crawl that reads few pages leaves them out too

Redis Cluster: the hash tag `{KB}` keeps every key of one knowledge base in one slot. A record is written
after the store write it describes succeeded: a crash in between leaves the old record (or none), so the next
crawl indexes the page again, which is harmless. The store is never asked about validators, so the Store
protocol stays as it is.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

import redis

__all__ = ["PageRecord", "PageRecords", "furniture_key", "page_records_key"]

_COMPRESS_OVER = 2048  # bytes of JSON from which a record is stored compressed (mostly its links)


def page_records_key(prefix: str, kb: str) -> str:
    """`P:kb:{KB}:pages`: the braces make the knowledge base's name the key's hash tag."""
    return f"{prefix}:kb:{{{kb}}}:pages"


def page_texts_key(prefix: str, kb: str) -> str:
    """`P:kb:{KB}:texts`, in the slot of the knowledge base's page records."""
    return f"{prefix}:kb:{{{kb}}}:texts"


def furniture_key(prefix: str, kb: str) -> str:
    """`P:kb:{KB}:furniture`, in the slot of the knowledge base's page records."""
    return f"{prefix}:kb:{{{kb}}}:furniture"


@dataclass(frozen=True)
class PageRecord:
    url: str
    content_hash: str = ""  # of everything the page's chunks are made of (title and sections)
    # The job's duplicate check's hash of the page's text (chunking.content_hash): a 304 claims it again, so
    # a copy of the page under another URL stays a duplicate in every crawl.
    text_hash: str = ""
    etag: str = ""
    last_modified: str = ""  # the Last-Modified header as the site sent it
    fetched_at: float = 0.0  # last time the site answered for the page (200 or 304)
    changed_at: float = 0.0  # last time its content changed (or was first indexed)
    indexed_at: float = 0.0  # last time its chunks were written to the store
    # Its outgoing in-scope links: followed on a 304 or unchanged content, to reach the rest of the site.
    links: list[str] = field(default_factory=list)
    # Which crawl's message last wrote its chunks ("<job id> <the message's url>") and its outcome then
    # ("added", "updated"): a message redelivered after its worker died past the write counts it as written.
    written_by: str = ""
    written_as: str = ""

    @property
    def validators(self) -> dict[str, str]:
        """The conditional request headers this record allows."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers

    def encode(self) -> bytes:
        raw = json.dumps(asdict(self), separators=(",", ":")).encode()
        return b"z" + zlib.compress(raw) if len(raw) > _COMPRESS_OVER else raw

    @classmethod
    def decode(cls, raw: bytes) -> PageRecord:
        if raw[:1] == b"z":
            raw = zlib.decompress(raw[1:])
        fields: dict[str, Any] = json.loads(raw)
        known = {name: fields[name] for name in cls.__dataclass_fields__ if name in fields}
        return cls(**known)


class PageRecords:
    """Page records of every knowledge base under one key prefix."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix

    def key(self, kb: str) -> str:
        return page_records_key(self.prefix, kb)

    def get(self, kb: str, url: str) -> PageRecord | None:
        raw = cast("bytes | None", self.redis.hget(self.key(kb), url))
        return PageRecord.decode(raw) if raw is not None else None

    def get_many(self, kb: str, urls: list[str]) -> dict[str, PageRecord]:
        """The records of those of `urls` the knowledge base has (one round trip)."""
        if not urls:
            return {}
        raws = cast("list[bytes | None]", self.redis.hmget(self.key(kb), urls))
        return {url: PageRecord.decode(raw) for url, raw in zip(urls, raws, strict=True) if raw is not None}

    def put(self, kb: str, record: PageRecord) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.key(kb), record.url, record.encode())
            if record.text_hash:
                pipe.hset(page_texts_key(self.prefix, kb), record.text_hash, record.url)
            pipe.execute()

    def page_with_text(self, kb: str, text_hash: str) -> str | None:
        """The page of the knowledge base whose text has this hash, if it holds one."""
        url = cast("bytes | None", self.redis.hget(page_texts_key(self.prefix, kb), text_hash))
        return url.decode() if url is not None else None

    def touch(self, kb: str, record: PageRecord, fetched_at: float, **changes: Any) -> PageRecord:
        """The record with `fetched_at` (and any other field given) updated, written back."""
        updated = replace(record, fetched_at=fetched_at, **changes)
        self.put(kb, updated)
        return updated

    def delete(self, kb: str, url: str) -> bool:
        record = self.get(kb, url)
        if record is None:
            return False
        self.redis.hdel(self.key(kb), url)
        texts = page_texts_key(self.prefix, kb)
        if record.text_hash and self.redis.hget(texts, record.text_hash) == url.encode():
            self.redis.hdel(texts, record.text_hash)
        return True

    def drop(self, kb: str) -> None:
        """Forget every page of the knowledge base (it is being deleted)."""
        self.redis.delete(self.key(kb), page_texts_key(self.prefix, kb), furniture_key(self.prefix, kb))

    def urls(self, kb: str) -> Iterator[str]:
        for url in cast("list[bytes]", self.redis.hkeys(self.key(kb))):
            yield url.decode()

    def count(self, kb: str) -> int:
        return int(self.redis.hlen(self.key(kb)))
