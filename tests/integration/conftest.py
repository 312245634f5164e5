"""The fixture site indexed once per session with the local embedder, for retrieval and Ask tests."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from ragcord.bootstrap import bootstrap
from ragcord.settings import Settings
from tests.harness import crawl
from tests.sitekit import FixtureSite

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "site"
QUESTIONS = json.loads((SITE / "questions.json").read_text())
DUPLICATES = json.loads((SITE / "manifest.json").read_text())["duplicates"]


def canonical(url: str) -> str:
    """The page a URL stands for (of two identical pages, either may have been indexed)."""
    path = urlsplit(url).path
    return DUPLICATES.get(path, path)


@pytest.fixture(scope="session")
def indexed(redis_url, tmp_path_factory):
    """Services over the fixture site crawled into knowledge base `docs` (vectors + BM25)."""
    prefix = f"test{uuid.uuid4().hex[:10]}"
    settings = Settings(
        _env_file=None,
        redis_url=redis_url,
        key_prefix=prefix,
        allow_private_networks=True,
        data_dir=tmp_path_factory.mktemp("indexed"),
        embedder="local",
    )
    services = bootstrap(settings)
    with FixtureSite(root=SITE) as site:
        job = crawl(settings, services, site.url("/docs/"), "docs", exclude_patterns=["/special/"])
    assert job.state.value == "SUCCEEDED"
    yield services
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
