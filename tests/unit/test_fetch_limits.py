"""The fetcher's pure parts: Retry-After as sites write it, bounded decoding, what robots.txt tells."""

from __future__ import annotations

import email.utils
import time
import zlib

import pytest

from ragcord.errors import Blocked, FetchFailed
from workers.crawler import FetchedPage, RobotsCache, _decoders, _Inflater, _retry_after


@pytest.mark.parametrize(("value", "seconds"), [("1", 1.0), (" 120 ", 120.0), ("", None), ("soon", None)])
def test_retry_after_in_seconds(value, seconds):
    assert _retry_after(value, cap=600) == seconds


def test_retry_after_as_an_http_date_and_capped():
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= _retry_after(in_a_minute, cap=600) <= 60
    assert _retry_after(email.utils.formatdate(time.time() - 60, usegmt=True), cap=600) == 0
    assert _retry_after("86400", cap=600) == 600


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
def test_deflate_is_read_wrapped_or_raw(wbits):
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
    data = compressor.compress(b"<p>hello</p>" * 100) + compressor.flush()
    assert _Inflater("deflate").feed(data, room=10_000) == b"<p>hello</p>" * 100


def test_inflating_stops_one_byte_past_the_room_left():
    bomb = zlib.compress(b" " * (50 << 20))  # 50 MiB of spaces in ~50 KB
    out = _Inflater("deflate").feed(bomb, room=1000)
    assert len(out) == 1001  # not 50 MiB: the caller sees "too large" without inflating the rest


def test_an_encoding_not_asked_for_is_refused_by_name():
    assert [d.encoding for d in _decoders("gzip")] == ["gzip"]
    assert _decoders("identity") == []
    with pytest.raises(FetchFailed, match="unsupported Content-Encoding 'br'"):
        _decoders("br")
    with pytest.raises(FetchFailed, match="corrupt"):
        _Inflater("gzip").feed(b"not gzip at all", room=100)


class RobotsFile:
    """A fetcher whose robots.txt is `body` (bytes), or whose fetch raises `error`."""

    def __init__(self, body: bytes = b"", error: Exception | None = None) -> None:
        self.body, self.error = body, error

    def fetch(self, url, scope=None, *, html_only=True, **options):
        if self.error is not None:
            raise self.error
        return FetchedPage(url, url, 200, "text/plain", self.body, None, truncated=len(self.body) > 10)


def test_the_crawl_delay_is_known_once_robots_txt_is_read():
    robots = RobotsCache(RobotsFile(b"User-agent: *\nCrawl-delay: 2.5\nDisallow: /private/\n"))
    url = "http://d.example/docs/"
    assert not robots.known(url) and robots.crawl_delay(url) is None
    assert robots.allowed(url) and not robots.allowed("http://d.example/private/x")
    assert robots.known(url) and robots.crawl_delay(url) == 2.5
    assert robots.why_refused(url) is None


def test_a_binary_robots_txt_has_no_rules_so_everything_is_allowed():
    robots = RobotsCache(RobotsFile(bytes(range(256)) * 100))
    assert robots.allowed("http://d.example/docs/") and robots.crawl_delay("http://d.example/") is None


def test_a_refused_robots_txt_says_why():
    reason = "docs.example connected to 127.0.0.1, a private, loopback or link-local address"
    robots = RobotsCache(RobotsFile(error=Blocked(reason)))
    assert not robots.allowed("http://docs.example/a.html")
    assert robots.why_refused("http://docs.example/b.html") == reason
