"""Name lookups are bounded by the page's deadline: getaddrinfo takes no timeout, and a resolver that never
answers must not hold a worker's thread past it. The guard's lookup and the connection's are both bounded."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from ragcord.errors import TransientFetchError
from ragcord.settings import Settings
from tests.sitekit import FixtureSite
from workers.crawler import DeadlineExceeded, Fetcher

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "site"
NEVER = "never-answers.test"  # its lookup hangs
NOWHERE = "no-such-name.test"  # its lookup fails at once


@pytest.fixture
def resolver_stuck_on_one_name(monkeypatch):
    release = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == NEVER:
            release.wait(60)
        if host in (NEVER, NOWHERE):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield
    release.set()


def settings(**overrides) -> Settings:
    values = dict(fetch_timeout_seconds=5.0, page_deadline_seconds=1.0, _env_file=None)
    values.update(overrides)
    return Settings(**values)


@pytest.mark.parametrize("allow_private", [True, False], ids=["connection's lookup", "guard's lookup"])
def test_a_lookup_that_never_answers_fails_the_page_at_its_deadline(
    resolver_stuck_on_one_name, allow_private
):
    fetcher = Fetcher(settings(allow_private_networks=allow_private))
    try:
        with pytest.raises(DeadlineExceeded, match=f"the name lookup of {NEVER} did not answer"):
            fetcher.fetch(f"http://{NEVER}/docs/")
    finally:
        fetcher.close()


def test_a_name_that_does_not_resolve_fails_as_a_connection_and_the_fetcher_still_serves(
    resolver_stuck_on_one_name,
):
    with FixtureSite(root=SITE) as site:
        fetcher = Fetcher(settings(allow_private_networks=True))
        try:
            with pytest.raises(TransientFetchError, match=f"connection failed: ConnectError: {NOWHERE}"):
                fetcher.fetch(f"http://{NOWHERE}/docs/")
            page = fetcher.fetch(site.url("/docs/"))  # a loopback IP literal: looked up at once
            assert page.status == 200 and b"<html" in page.body.lower()
        finally:
            fetcher.close()
