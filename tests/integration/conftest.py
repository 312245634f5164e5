"""The fixture site indexed once per session with the local embedder, for retrieval and Ask tests."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser_kit import chromium, docsify_js  # noqa: F401 - fixtures of the rendering tests
from tests.harness import crawl, local_services
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
    with local_services(redis_url, tmp_path_factory.mktemp("indexed"), name="test") as services:
        with FixtureSite(root=SITE) as site:
            seed = site.url("/docs/")
            job = crawl(services.settings, services, seed, "docs", exclude_patterns=["/special/"])
        assert job.state.value == "SUCCEEDED"
        yield services
