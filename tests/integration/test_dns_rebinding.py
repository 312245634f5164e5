"""DNS rebinding: a name that passes the address guard and then connects to a private address is refused.

The guard resolves the name once; httpx resolves it again to connect. These tests make the second answer
differ from the first: the guard's resolver says a public address, while the network backend connects to the
loopback fixture site (what a rebinding DNS server does). The crawler must look at the address the connection
reached, before it sends the request: for the page, for every redirect hop and for robots.txt.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import dramatiq
import httpcore
import pytest

from ragcord.bootstrap import bootstrap
from ragcord.crawls import start_crawl
from ragcord.errors import Blocked
from ragcord.jobs.records import EventKind
from ragcord.settings import Settings
from tests.sitekit import FixtureSite
from workers.actors import declare_actors
from workers.broker import build_broker
from workers.crawler import Fetcher, RobotsCache
from workers.pipeline import build_page_crawler

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "site"
PUBLIC = "93.184.216.34"  # what the guard is shown


def public_resolver(host: str, port: int) -> list[str]:
    """The guard's look-up: every name is public (an IP literal is itself)."""
    return [host] if host[:1].isdigit() else [PUBLIC]


class _PeerSays(httpcore.NetworkStream):
    """A real loopback connection that reports `address` as its peer (a public server, to all it seems)."""

    def __init__(self, inner: httpcore.NetworkStream, address: str) -> None:
        self.inner, self.address = inner, address

    def read(self, max_bytes, timeout=None):
        return self.inner.read(max_bytes, timeout)

    def write(self, buffer, timeout=None):
        self.inner.write(buffer, timeout)

    def close(self):
        self.inner.close()

    def get_extra_info(self, info):
        if info == "server_addr":
            return (self.address, 80)
        return self.inner.get_extra_info(info)


class Rebinding(httpcore.NetworkBackend):
    """Connects every name to the loopback site. Names in `public` pretend to have reached PUBLIC (a site that
    really is public); every other name lands on 127.0.0.1 and says so, as a rebound name would."""

    def __init__(self, port: int, public: tuple[str, ...] = ()) -> None:
        self.port, self.public = port, public
        self.connected: list[str] = []

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.connected.append(host)
        stream = httpcore.SyncBackend().connect_tcp(
            "127.0.0.1", self.port, timeout, local_address, socket_options
        )
        return _PeerSays(stream, PUBLIC) if host in self.public else stream

    def sleep(self, seconds):
        httpcore.SyncBackend().sleep(seconds)


@pytest.fixture
def site():
    with FixtureSite(root=SITE) as running:
        yield running


def settings(**overrides) -> Settings:
    values = dict(allow_private_networks=False, fetch_timeout_seconds=5.0, _env_file=None)
    values.update(overrides)
    return Settings(**values)


def test_a_name_that_rebinds_to_loopback_is_refused_before_the_request_is_sent(site):
    backend = Rebinding(site.port)
    fetcher = Fetcher(settings(), network_backend=backend, resolver=public_resolver)
    with pytest.raises(Blocked) as refused:
        fetcher.fetch(f"http://docs.example.test:{site.port}/docs/installation.html")
    reason = str(refused.value)
    assert "docs.example.test connected to 127.0.0.1" in reason and "DNS rebinding" in reason
    assert backend.connected == ["docs.example.test"]  # it did connect: the guard saw the name pass
    assert site.requests == []  # ...and not a byte of the request reached the private address


def test_the_same_fetch_works_where_private_networks_are_allowed(site):
    fetcher = Fetcher(
        settings(allow_private_networks=True), network_backend=Rebinding(site.port), resolver=public_resolver
    )
    page = fetcher.fetch(f"http://docs.example.test:{site.port}/docs/installation.html")
    assert page.status == 200 and b"<html" in page.body.lower()


def test_a_redirect_hop_that_rebinds_is_refused(site):
    # www.example.test really is public; it redirects to docs.example.test, which rebinds to loopback.
    backend = Rebinding(site.port, public=("www.example.test",))
    fetcher = Fetcher(settings(), network_backend=backend, resolver=public_resolver)
    hop = f"http://docs.example.test:{site.port}/docs/installation.html"
    with pytest.raises(Blocked, match="docs.example.test connected to 127.0.0.1"):
        fetcher.fetch(f"http://www.example.test:{site.port}/hostile/redirect?to={hop}")
    assert backend.connected == ["www.example.test", "docs.example.test"]
    assert [p for p in site.requests if p.startswith("/docs/")] == []  # the hop's request was never sent


def test_a_public_site_still_works_through_the_guard(site):
    backend = Rebinding(site.port, public=("www.example.test",))
    fetcher = Fetcher(settings(), network_backend=backend, resolver=public_resolver)
    page = fetcher.fetch(f"http://www.example.test:{site.port}/docs/installation.html")
    assert page.status == 200


def test_a_redirect_to_a_private_address_is_refused_by_the_first_check(site):
    backend = Rebinding(site.port, public=("www.example.test",))
    fetcher = Fetcher(settings(), network_backend=backend, resolver=public_resolver)
    for target in ("http://127.0.0.1/admin", "http://10.1.2.3/", "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(Blocked, match="private, loopback or link-local"):
            fetcher.fetch(f"http://www.example.test:{site.port}/hostile/redirect?to={target}")
    assert backend.connected == ["www.example.test"] * 3  # none of the private targets was connected to


def test_robots_txt_that_rebinds_is_refused_and_the_site_treated_as_disallowed(site):
    backend = Rebinding(site.port)
    robots = RobotsCache(Fetcher(settings(), network_backend=backend, resolver=public_resolver))
    assert robots.allowed(f"http://docs.example.test:{site.port}/docs/installation.html") is False
    assert backend.connected == ["docs.example.test"] and site.requests == []


@contextlib.contextmanager
def worker_behind(settings: Settings, backend: httpcore.NetworkBackend):
    """A real Dramatiq worker whose crawler connects through `backend` and resolves with public_resolver."""
    services = bootstrap(settings)
    broker = build_broker(settings)
    crawler = []
    actors = declare_actors(broker, settings, lambda: crawler[0])
    built = build_page_crawler(services, actors.enqueue_page)
    built.fetcher = Fetcher(settings, network_backend=backend, resolver=public_resolver)
    built.robots = RobotsCache(built.fetcher)
    crawler.append(built)
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=2)
    worker.start()
    try:
        yield services, declare_actors(build_broker(settings), settings).enqueue_page
    finally:
        worker.stop(timeout=10_000)
        broker.close()
        built.fetcher.close()


def test_a_crawl_of_a_name_that_rebinds_ends_with_the_reason_and_nothing_sent(make_settings, site):
    settings = make_settings(allow_private_networks=False)
    backend = Rebinding(site.port)
    with worker_behind(settings, backend) as (services, enqueue):
        seed = f"http://docs.example.test:{site.port}/docs/installation.html"
        # The API's own check passes too: it is shown the public address.
        job = start_crawl(
            settings, services.jobs, enqueue, url=seed, knowledge_base="kb", resolver=public_resolver
        )
        deadline = time.monotonic() + 60
        while not (job := services.jobs.get(job.id)).state.terminal:
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        (event,) = [e for e in services.jobs.events(job.id) if e.kind is EventKind.PAGE_SKIPPED]
    assert event.page_url == seed
    assert event.detail.startswith(
        "disallowed by robots.txt (robots.txt itself was refused: docs.example.test"
    )
    assert "connected to 127.0.0.1" in event.detail and "DNS rebinding" in event.detail
    assert site.requests == []
