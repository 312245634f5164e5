"""The fixture site server itself: content types, routing, special routes, hit counting, fast shutdown."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx
import pytest

from tests.sitekit import HUGE_BYTES, REDIRECT_IN_TARGET, SPECIAL_ROUTES, FixtureSite

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "site"
MANIFEST = json.loads((SITE / "manifest.json").read_text())


@pytest.fixture(scope="module")
def site() -> Iterator[FixtureSite]:
    with FixtureSite(root=SITE) as running:
        yield running


@pytest.fixture(scope="module")
def client(site: FixtureSite) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.base_url, timeout=5.0, follow_redirects=False) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/docs/index.html", "text/html; charset=utf-8"),
        ("/docs/faq.html", "text/html; charset=utf-8"),
        ("/robots.txt", "text/plain; charset=utf-8"),
        ("/docs/guide.pdf", "application/pdf"),
        ("/manifest.json", "application/json"),
    ],
)
def test_files_are_served_with_their_content_type(client, path, content_type):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == (SITE / path.lstrip("/")).read_bytes()
    assert int(response.headers["content-length"]) == len(response.content)


def test_robots_txt_disallows_the_private_section(client):
    assert client.get("/robots.txt").text.splitlines() == ["User-agent: *", "Disallow: /docs/private/"]


def test_a_directory_serves_its_index_and_redirects_without_slash(client):
    response = client.get("/docs/")
    assert response.status_code == 200
    assert response.content == (SITE / "docs" / "index.html").read_bytes()
    bare = client.get("/docs")
    assert bare.status_code == 301 and bare.headers["location"] == "/docs/"


def test_missing_files_and_escapes_from_the_root_are_404(client, site):
    assert client.get("/docs/nope.html").status_code == 404
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=5)
    try:
        conn.request("GET", "/docs/../../pyproject.toml")  # http.client sends the path as is
        assert conn.getresponse().status == 404
    finally:
        conn.close()


def test_head_returns_headers_only(client):
    response = client.head("/docs/faq.html")
    assert response.status_code == 200 and response.content == b""
    assert int(response.headers["content-length"]) == (SITE / "docs" / "faq.html").stat().st_size


def test_malformed_page_is_broken_but_readable(client):
    response = client.get("/docs/special/malformed.html")
    assert response.status_code == 200 and response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text.rstrip().endswith("<p") and "</td></tr></table>" in response.text
    assert len(re.sub(r"<[^>]*>", " ", response.text).split()) >= 100


@pytest.mark.parametrize("path", ["/docs/special/huge.html", "/docs/special/huge-chunked.html"])
def test_huge_pages_stream_and_can_be_abandoned(site, path):
    with httpx.Client(timeout=5.0) as c, c.stream("GET", site.url(path)) as response:
        assert response.status_code == 200
        if path.endswith("huge.html"):
            assert response.headers["content-length"] == str(HUGE_BYTES)
            assert "transfer-encoding" not in response.headers
        else:
            assert response.http_version == "HTTP/1.1"
            assert response.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in response.headers
        first = next(response.iter_bytes())
        assert first.startswith(b"<!DOCTYPE html>")
    assert httpx.get(site.url("/robots.txt"), timeout=5.0).status_code == 200  # still serving


def test_huge_chunked_body_has_the_announced_size():
    """Read the whole 50 MB chunked body once, to prove the framing is valid."""
    with (
        FixtureSite(root=SITE) as own,
        httpx.Client(timeout=10.0) as c,
        c.stream("GET", own.url("/docs/special/huge-chunked.html")) as response,
    ):
        total = sum(len(piece) for piece in response.iter_raw())
    assert total == HUGE_BYTES


def test_redirect_loop(client):
    a = client.get("/docs/special/loop-a.html")
    assert a.status_code == 302 and a.headers["location"] == "/docs/special/loop-b.html"
    b = client.get("/docs/special/loop-b.html")
    assert b.status_code == 302 and b.headers["location"] == "/docs/special/loop-a.html"
    with pytest.raises(httpx.TooManyRedirects):
        client.get("/docs/special/loop-a.html", follow_redirects=True)


def test_slow_page_never_answers(site):
    before = site.hits("/docs/special/slow.html")
    with pytest.raises(httpx.ReadTimeout):  # the request got through, and no response ever started
        httpx.get(site.url("/docs/special/slow.html"), timeout=0.5)
    assert site.hits("/docs/special/slow.html") == before + 1


def test_latin1_page_has_no_charset_and_is_not_utf8(client):
    response = client.get("/docs/special/latin1.html")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html"
    with pytest.raises(UnicodeDecodeError):
        response.content.decode("utf-8")
    text = response.content.decode("cp1252")
    assert all(ch in text for ch in "éüß“”’")
    assert len(re.sub(r"<[^>]*>", " ", text).split()) >= 100


@pytest.mark.parametrize(
    ("path", "status", "location"),
    [
        ("/docs/special/gone.html", 404, None),
        ("/docs/special/error.html", 500, None),
        ("/docs/special/moved.html", 301, "/blog/post.html"),
        ("/docs/special/redirect-in.html", 301, REDIRECT_IN_TARGET),
    ],
)
def test_simple_special_routes(client, path, status, location):
    response = client.get(path)
    assert response.status_code == status
    assert response.headers.get("location") == location


def test_redirect_in_lands_on_an_in_scope_copy_of_a_page(client):
    target = client.get(REDIRECT_IN_TARGET)
    assert urlsplit(REDIRECT_IN_TARGET).path.startswith("/docs/")
    assert target.content == client.get(urlsplit(REDIRECT_IN_TARGET).path).content


def test_requests_and_hits_are_recorded_exactly():
    with FixtureSite(root=SITE) as own, httpx.Client(base_url=own.base_url, timeout=5.0) as c:
        paths = [
            "/docs/",
            "/docs/faq.html",
            "/docs/faq.html?x=1",
            "/docs/faq.html",
            "/nope",
            "/docs/special/error.html",
        ]
        for path in paths:
            c.get(path)
        assert own.requests == paths
        assert own.hits("/docs/faq.html") == 2
        assert own.hits("/docs/faq.html?x=1") == 1
        assert own.hits("/docs/") == 1 and own.hits("/docs/index.html") == 0
        assert own.hits("/docs/special/error.html") == 1
        own.reset()
        assert own.requests == [] and own.hits("/docs/faq.html") == 0
        assert own.errors == []


def test_delay_slows_every_request():
    with FixtureSite(root=SITE, delay=0.2) as own:
        started = time.monotonic()
        assert httpx.get(own.url("/robots.txt"), timeout=5.0).status_code == 200
        assert time.monotonic() - started >= 0.2


def test_close_is_prompt_with_a_slow_request_in_flight():
    own = FixtureSite(root=SITE)
    url = own.url("/docs/special/slow.html")
    with httpx.Client(timeout=10.0) as c:
        failures: list[BaseException] = []

        def hang() -> None:
            try:
                c.get(url)
            except BaseException as exc:  # noqa: BLE001 - recorded; the test checks which one
                failures.append(exc)

        thread = threading.Thread(target=hang, daemon=True)
        thread.start()
        while own.hits("/docs/special/slow.html") == 0:  # pytest-timeout guards a hang
            time.sleep(0.01)
        handlers = list(own._connections.values())
        own.close()
        # close() woke the sleeping handler and dropped its connection: no handler outlived it
        assert handlers and not any(h.is_alive() for h in handlers)
        thread.join()
        # the client saw the server hang up (not its own 10 s timeout firing)
        assert len(failures) == 1 and isinstance(failures[0], (httpx.RemoteProtocolError, httpx.ReadError))
    own.close()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(own.url("/robots.txt"), timeout=1.0)


# -- the fixture site's content agrees with its manifest


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.links.append(href)


def _crawl_depths(client: httpx.Client) -> dict[str, int]:
    """Breadth-first over in-scope links from /docs/ (fragments dropped, robots ignored): target -> depth."""
    depths = {"/docs/": 0}
    queue = ["/docs/"]
    while queue:
        current = queue.pop(0)
        path = urlsplit(current).path
        if (
            path.startswith("/docs/private/")
            or path.startswith("/docs/special/")
            or not (path.endswith("/") or path.endswith(".html"))
        ):
            continue
        response = client.get(current)
        parser = _Links()
        parser.feed(response.text)
        for href in parser.links:
            url = urlsplit(urldefrag(urljoin(f"http://h{current}", href))[0])
            target = url.path + (f"?{url.query}" if url.query else "")
            if url.netloc == "h" and url.path.startswith("/docs/") and target not in depths:
                depths[target] = depths[current] + 1
                queue.append(target)
    return depths


def test_manifest_matches_the_link_graph(client):
    depths = _crawl_depths(client)
    assert 36 <= len([p for p in SITE.joinpath("docs").rglob("*.html")]) <= 40
    for path in MANIFEST["indexable"]:
        assert (SITE / path.lstrip("/")).is_file(), path
        assert path == "/docs/index.html" or path in depths, f"{path} is not reachable"
    for path in MANIFEST["depth2_only"]:
        assert depths[path] == 2, path
    for path in [
        *MANIFEST["special"],
        *MANIFEST["duplicates"],
        *MANIFEST["robots_disallowed"],
        *MANIFEST["not_html"],
    ]:
        assert depths[path] == 1, f"{path} should be linked from the index"
    assert set(MANIFEST["special"]) <= set(SPECIAL_ROUTES)
    for dup, original in {**MANIFEST["duplicates"], **MANIFEST["query_duplicates"]}.items():
        assert dup in depths
        assert client.get(dup).content == client.get(original).content
    for path in MANIFEST["out_of_scope"]:
        assert (SITE / path.lstrip("/")).is_file() and path not in depths


def test_questions_point_at_indexable_pages():
    questions = json.loads((SITE / "questions.json").read_text())
    assert len(questions) == 40
    assert sum("followup" in q for q in questions) == 3
    assert {q["page"] for q in questions} <= set(MANIFEST["indexable"])
    assert len({q["question"] for q in questions}) == 40
