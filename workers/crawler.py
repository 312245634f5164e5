"""Fetching and reading one page: the address guard, robots.txt, httpx with caps, extraction."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx
from protego import Protego

from ragcord.errors import Blocked, Duplicate, FetchFailed, NotHtml, TooLarge, TransientFetchError
from ragcord.settings import Settings
from ragcord.urls import Scope, guard_fetch, normalize_url
from workers.extraction import ExtractedPage, extract_html, sniff_encoding

__all__ = ["ExtractedPage", "FetchedPage", "Fetcher", "RobotsCache", "extract"]

log = logging.getLogger(__name__)

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class FetchedPage:
    requested_url: str
    url: str  # after redirects
    status: int
    content_type: str
    body: bytes
    charset: str | None

    def text(self) -> str:
        """The body as text, its encoding found as a browser would (robots.txt reads it)."""
        encoding = sniff_encoding(self.body, self.charset)
        return self.body.decode(encoding, errors="replace").removeprefix("\ufeff")


class Fetcher:
    """GETs one URL: every redirect hop is re-checked against the scope and the address guard."""

    def __init__(self, settings: Settings, *, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(
                settings.fetch_timeout_seconds, connect=min(10.0, settings.fetch_timeout_seconds)
            ),
            headers={
                "User-Agent": settings.user_agent,
                "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1",
            },
            follow_redirects=False,
        )

    def close(self) -> None:
        self.client.close()

    def fetch(
        self,
        url: str,
        scope: Scope | None = None,
        *,
        html_only: bool = True,
        claim_redirect: Callable[[str], bool] | None = None,
    ) -> FetchedPage:
        """`claim_redirect(target)` returning False stops at a redirect to a page crawled separately."""
        current = url
        visited = {url}
        for _ in range(self.settings.max_redirects + 1):
            guard_fetch(current, allow_private=self.settings.allow_private_networks)
            response = self._get(current, html_only=html_only)
            if response.status not in _REDIRECTS:
                return FetchedPage(
                    url, current, response.status, response.content_type, response.body, response.charset
                )
            if not response.location:
                raise FetchFailed(f"HTTP {response.status} redirect without a Location header")
            target = normalize_url(urljoin(current, response.location))
            if urlsplit(target).scheme not in ("http", "https"):
                raise Blocked(f"redirected to a non-HTTP URL {target}")
            if target in visited:
                raise FetchFailed(f"redirect loop at {target}")
            if scope is not None and (why := scope.why_outside(target)):
                raise Blocked(f"redirected to {target}, {why}")
            if claim_redirect is not None and not claim_redirect(target):
                raise Duplicate(f"duplicate: redirects to {target}, which is crawled separately")
            visited.add(target)
            current = target
        raise FetchFailed(f"more than {self.settings.max_redirects} redirects")

    @dataclass
    class _Response:
        status: int
        content_type: str
        charset: str | None
        location: str | None
        body: bytes

    def _get(self, url: str, *, html_only: bool) -> Fetcher._Response:
        cap = self.settings.max_page_bytes
        try:
            with self.client.stream("GET", url) as response:
                status = response.status_code
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if status in _REDIRECTS:
                    return self._Response(status, content_type, None, response.headers.get("location"), b"")
                if status == 429 or status >= 500:
                    raise TransientFetchError(f"HTTP {status}")
                if status >= 400:
                    raise FetchFailed(f"HTTP {status}")
                if html_only and content_type not in _HTML_TYPES:
                    raise NotHtml(f"not HTML ({content_type or 'no content type'})")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > cap:
                    raise TooLarge(f"too large ({int(declared)} bytes, limit {cap})")
                body = bytearray()
                for piece in response.iter_bytes():
                    body += piece
                    if len(body) > cap:
                        raise TooLarge(f"too large (over {cap} bytes)")
                if html_only and b"\x00" in body[:8192]:
                    raise NotHtml(f"not HTML (binary content served as {content_type})")
                return self._Response(status, content_type, response.charset_encoding, None, bytes(body))
        except httpx.TimeoutException:
            raise TransientFetchError(f"timeout after {self.settings.fetch_timeout_seconds:g}s") from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise TransientFetchError(f"connection failed: {type(exc).__name__}: {exc}") from None


class RobotsCache:
    """robots.txt per origin, read with Protego (RFC 9309: longest match, `*` and `$`), kept `ttl` seconds.

    A missing robots.txt (4xx) allows everything; one that redirects somewhere refused or is too large
    disallows everything. One that cannot be read right now (timeout, 429, 5xx) is not cached: the page is
    retried like any transient failure, and fails with that reason if robots.txt stays unreadable.
    """

    AGENT = "ragcord"
    MAX_BYTES = 500 * 1024  # RFC 9309 2.5: at least 500 KiB are read

    def __init__(self, fetcher: Fetcher, *, ttl: float = 3600.0) -> None:
        self.fetcher = fetcher
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Protego]] = {}
        self._lock = threading.Lock()

    def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            cached = self._cache.get(origin)
        if cached is None or cached[0] < time.monotonic():
            cached = (time.monotonic() + self.ttl, self._load(origin))
            with self._lock:
                self._cache[origin] = cached
        return bool(cached[1].can_fetch(url, self.AGENT))

    def _load(self, origin: str) -> Protego:
        try:
            page = self.fetcher.fetch(f"{origin}/robots.txt", html_only=False)
        except FetchFailed:
            return Protego.parse("")  # 4xx: no robots.txt, everything is allowed
        except TransientFetchError as exc:
            raise TransientFetchError(f"robots.txt of {origin} could not be read: {exc}") from None
        except (TooLarge, Blocked) as exc:
            log.warning("robots.txt of %s refused (%s): treating the site as disallowed", origin, exc)
            return Protego.parse("User-agent: *\nDisallow: /")
        return Protego.parse(page.body[: self.MAX_BYTES].decode("utf-8", errors="replace"))


def extract(page: FetchedPage) -> ExtractedPage:
    """Title, canonical URL, every link and the main content's sections; raises ExtractionFailed."""
    return extract_html(page.body, page.url, charset=page.charset)
