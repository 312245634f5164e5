"""Fetching and reading one page: the address guard, robots.txt, httpx with caps, extraction.

The address guard runs twice: on the name before a request (a clear reason early), and on the address a
connection actually reached (`GuardedBackend`), because httpx resolves the name again and a name can answer
with a public address to the first look-up and a private one to the second (DNS rebinding). The second
check runs before a byte of the request is sent, for every connection: each redirect hop and robots.txt too.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import email.utils
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx
from protego import Protego

from ragcord.errors import Blocked, Duplicate, FetchFailed, Gone, NotHtml, TooLarge, TransientFetchError
from ragcord.settings import Settings
from ragcord.urls import (
    Resolver,
    Scope,
    addresses,
    guard_fetch,
    is_public_address,
    normalize_url,
    resolve,
)
from workers.extraction import ExtractedPage, sniff_encoding
from workers.extraction.formats import Format, ReadLimits, page_format, read_page

__all__ = [
    "DeadlineExceeded",
    "ExtractedPage",
    "FetchedPage",
    "Fetcher",
    "GuardedBackend",
    "RetryLater",
    "RobotsCache",
    "extract",
]

log = logging.getLogger(__name__)

_REDIRECTS = (301, 302, 303, 307, 308)
# Decoded here, each with its output bounded by the size cap (httpx's own decoders inflate a whole read at
# once: one 64 KiB read of a gzip bomb is 64 MiB). Brotli is not asked for: no bounded decoder is installed.
_ACCEPT_ENCODING = "gzip, deflate"

# When the page being fetched must be done (time.monotonic()); every socket operation of this thread is
# bounded by it, so a server trickling its headers or body a byte at a time cannot hold a worker.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "ragcord_fetch_deadline", default=None
)


class RetryLater(TransientFetchError):
    """The site said it is busy (429, 503); `retry_after` is how long it asked us to wait, if it said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(FetchFailed):
    """The page's whole fetch took longer than `page_deadline_seconds`."""


class _DeadlinePassed(Exception):
    """The page's deadline passed during a socket operation (not an httpcore error, so it is not mapped)."""


# getaddrinfo takes no timeout: a resolver that never answers would hold the worker's thread past the page's
# deadline. Lookups run on these threads and the page waits for them only until its deadline.
_LOOKUPS = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="ragcord-lookup")
_T = TypeVar("_T")


def _within_deadline(lookup: Callable[[], _T], host: str) -> _T:
    """`lookup()` (a name lookup of `host`), given up on when the page's deadline passes."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return lookup()
    future = _LOOKUPS.submit(lookup)
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except concurrent.futures.TimeoutError:
        raise DeadlineExceeded(
            f"the name lookup of {host[:80]} did not answer within the page deadline"
        ) from None


class _LookupFirstBackend(httpcore.SyncBackend):
    """httpcore's own backend, with the name looked up first within the page's deadline, then each address
    tried in turn (as `socket.create_connection` does, which would look the name up with no bound)."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            found = _within_deadline(lambda: addresses(host, port), host)
        except OSError as exc:  # gaierror: the name does not resolve
            raise httpcore.ConnectError(f"{host[:80]}: {exc}") from None
        error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in found:
            try:
                return super().connect_tcp(address, port, _bounded(timeout), local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error or httpcore.ConnectError(f"{host[:80]} has no address")


class _RefusedPeer(Exception):
    """A connection reached an address the guard refuses; raised before anything is sent on it."""


def _bounded(timeout: float | None) -> float | None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _DeadlinePassed()
    return remaining if timeout is None else min(timeout, remaining)


def _peer_address(stream: Any) -> str | None:
    peer = stream.get_extra_info("server_addr")
    if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
        return peer[0]
    return None


class _GuardedStream(httpcore.NetworkStream):
    """A connection whose every read and write is bounded by the page's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _bounded(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _bounded(timeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _GuardedStream(self.inner.start_tls(ssl_context, server_hostname, _bounded(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend that refuses a connection landing on a private address (unless allowed).

    `inner` is the backend that really connects (tests pass one that connects to loopback whatever the name).
    """

    def __init__(self, *, allow_private: bool, inner: httpcore.NetworkBackend | None = None) -> None:
        self.allow_private = allow_private
        self.inner = inner or _LookupFirstBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self.inner.connect_tcp(host, port, _bounded(timeout), local_address, socket_options)
        if not self.allow_private:
            address = _peer_address(stream)
            if address is None or not is_public_address(address):
                stream.close()
                raise _RefusedPeer(
                    f"{host} connected to {address or 'an unknown address'}, a private, loopback or "
                    "link-local address, though the name passed the address check a moment before "
                    "(DNS rebinding?): refused before sending the request"
                )
        return _GuardedStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise _RefusedPeer("the crawler does not connect to unix sockets")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over a `GuardedBackend` (httpx takes no backend argument; its pool does)."""

    def __init__(self, backend: GuardedBackend, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


@dataclass(frozen=True)
class FetchedPage:
    requested_url: str
    url: str  # after redirects
    status: int
    content_type: str
    body: bytes
    charset: str | None
    truncated: bool = False  # only with `truncate=True`: the body is the first `max_bytes` bytes
    etag: str = ""  # the validators the site sent with it (for the next crawl's conditional request)
    last_modified: str = ""

    @property
    def not_modified(self) -> bool:
        """The site answered 304 to a conditional request: the stored copy is current (no body)."""
        return self.status == 304

    def text(self) -> str:
        """The body as text, its encoding found as a browser would (robots.txt reads it)."""
        encoding = sniff_encoding(self.body, self.charset)
        return self.body.decode(encoding, errors="replace").removeprefix("\ufeff")


class _Inflater:
    """gzip or deflate, decoded in pieces of bounded size."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._raw_deflate = False
        self._started = False
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)

    def feed(self, data: bytes, room: int) -> bytes:
        """At most room + 1 bytes: one byte more than fits tells the caller the page is too large."""
        try:
            out = self._d.decompress(data, room + 1)
        except zlib.error:
            if self.encoding != "deflate" or self._started or self._raw_deflate:
                raise FetchFailed(f"the {self.encoding} body is corrupt") from None
            self._raw_deflate = True  # servers send raw deflate as "deflate" too
            self._d = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.feed(data, room)
        self._started = True
        return out


def _decoders(content_encoding: str) -> list[_Inflater]:
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    decoders = []
    for coding in reversed(codings):  # the last one applied is undone first
        if coding in ("identity", ""):
            continue
        if coding in ("gzip", "x-gzip"):
            decoders.append(_Inflater("gzip"))
        elif coding == "deflate":
            decoders.append(_Inflater("deflate"))
        else:
            raise FetchFailed(
                f"unsupported Content-Encoding {coding!r}: the crawler asked for {_ACCEPT_ENCODING} only"
            )
    return decoders


def _retry_after(value: str | None, cap: float) -> float | None:
    """Retry-After in seconds (a number or an HTTP date), at most `cap`; None when absent or unreadable."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - datetime.now(UTC)).total_seconds()), cap)


class Fetcher:
    """GETs one URL: every redirect hop is re-checked against the scope and the address guard.

    Seams for tests: `client` (a whole httpx client), or `network_backend` (what connects, under the guard)
    and `resolver` (what the guard's first check resolves names with).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client: httpx.Client | None = None,
        network_backend: httpcore.NetworkBackend | None = None,
        resolver: Resolver = resolve,
    ) -> None:
        self.settings = settings
        self.resolver = resolver
        backend = GuardedBackend(allow_private=settings.allow_private_networks, inner=network_backend)
        self.client = client or httpx.Client(
            transport=_GuardedTransport(
                backend, httpx.Limits(max_connections=100, max_keepalive_connections=20)
            ),
            timeout=httpx.Timeout(
                settings.fetch_timeout_seconds, connect=min(10.0, settings.fetch_timeout_seconds)
            ),
            headers={
                "User-Agent": settings.user_agent,
                "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1",
                "Accept-Encoding": _ACCEPT_ENCODING,
            },
            follow_redirects=False,
            # A proxy from the environment would resolve names itself, out of the guard's sight.
            trust_env=False,
        )

    def close(self) -> None:
        self.client.close()

    def _resolve(self, host: str, port: int) -> list[str]:
        """The guard's lookup, within the page's deadline like every other step of a fetch."""
        return _within_deadline(lambda: list(self.resolver(host, port)), host)

    def fetch(
        self,
        url: str,
        scope: Scope | None = None,
        *,
        html_only: bool = True,
        claim_redirect: Callable[[str], bool] | None = None,
        max_bytes: int | None = None,
        truncate: bool = False,
        validators: dict[str, str] | None = None,
    ) -> FetchedPage:
        """`claim_redirect(target)` returning False stops at a redirect to a page crawled separately.

        `validators` (If-None-Match, If-Modified-Since) go with the request for `url` itself (not to a
        redirect's target): a 304 comes back as a page with `not_modified` and no body. A 404 or 410 raises
        Gone (a FetchFailed).

        The body is capped at `max_bytes` (default `max_page_bytes`) once decompressed: beyond it TooLarge,
        or with `truncate` the first `max_bytes` bytes. The whole fetch, redirects included, must end
        within `page_deadline_seconds`.
        """
        deadline = time.monotonic() + self.settings.page_deadline_seconds
        outer = _DEADLINE.get()
        token = _DEADLINE.set(deadline if outer is None else min(outer, deadline))
        try:
            return self._follow(url, scope, html_only, claim_redirect, max_bytes, truncate, validators)
        finally:
            _DEADLINE.reset(token)

    def _follow(
        self,
        url: str,
        scope: Scope | None,
        html_only: bool,
        claim_redirect: Callable[[str], bool] | None,
        max_bytes: int | None,
        truncate: bool,
        validators: dict[str, str] | None = None,
    ) -> FetchedPage:
        current = url
        visited = {url}
        for _ in range(self.settings.max_redirects + 1):
            guard_fetch(current, allow_private=self.settings.allow_private_networks, resolver=self._resolve)
            response = self._get(
                current,
                html_only=html_only,
                max_bytes=max_bytes,
                truncate=truncate,
                headers=validators if current == url else None,
            )
            if response.status not in _REDIRECTS:
                return FetchedPage(
                    url,
                    current,
                    response.status,
                    response.content_type,
                    response.body,
                    response.charset,
                    response.truncated,
                    response.etag,
                    response.last_modified,
                )
            if not response.location:
                raise FetchFailed(f"HTTP {response.status} redirect without a Location header")
            try:
                target = normalize_url(urljoin(current, response.location))
            except ValueError:
                raise FetchFailed(f"redirected to a malformed URL {response.location[:200]!r}") from None
            if urlsplit(target).scheme not in ("http", "https"):
                raise Blocked(f"redirected to a non-HTTP URL {target[:200]}")
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
        truncated: bool = False
        etag: str = ""
        last_modified: str = ""

    def _get(
        self,
        url: str,
        *,
        html_only: bool,
        max_bytes: int | None,
        truncate: bool,
        headers: dict[str, str] | None = None,
    ) -> Fetcher._Response:
        settings = self.settings
        try:
            with self.client.stream("GET", url, headers=headers or None) as response:
                self._check_peer(url, response)
                return self._read(response, html_only=html_only, max_bytes=max_bytes, truncate=truncate)
        except _RefusedPeer as exc:
            raise Blocked(str(exc)) from None
        except (_DeadlinePassed, httpx.TimeoutException) as exc:
            deadline = _DEADLINE.get()
            if isinstance(exc, _DeadlinePassed) or (deadline is not None and time.monotonic() >= deadline):
                raise DeadlineExceeded(
                    f"took longer than the page deadline of {settings.page_deadline_seconds:g}s "
                    "(the server sent its response too slowly)"
                ) from None
            raise TransientFetchError(f"timeout after {settings.fetch_timeout_seconds:g}s") from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise TransientFetchError(f"connection failed: {type(exc).__name__}: {exc}") from None

    def _check_peer(self, url: str, response: httpx.Response) -> None:
        """The address this response came from (the backend checked it at connect: this proves it)."""
        stream = response.extensions.get("network_stream")
        if self.settings.allow_private_networks or stream is None:
            return
        address = _peer_address(stream)
        if address is None or not is_public_address(address):
            raise _RefusedPeer(
                f"{urlsplit(url).hostname} answered from {address or 'an unknown address'}, a private, "
                "loopback or link-local address"
            )

    def _read(
        self, response: httpx.Response, *, html_only: bool, max_bytes: int | None, truncate: bool
    ) -> Fetcher._Response:
        cap = max_bytes or self.settings.max_page_bytes
        status = response.status_code
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if status in _REDIRECTS:
            return self._Response(status, content_type, None, response.headers.get("location"), b"")
        etag = response.headers.get("etag", "")[:512]
        last_modified = response.headers.get("last-modified", "")[:128]
        if status == 304:
            return self._Response(status, content_type, None, None, b"", False, etag, last_modified)
        if status in (429, 503):
            wait = _retry_after(response.headers.get("retry-after"), self.settings.max_retry_after_seconds)
            said = f", Retry-After {wait:g}s" if wait is not None else ""
            raise RetryLater(f"HTTP {status} (the site is busy{said})", wait)
        if status >= 500:
            raise TransientFetchError(f"HTTP {status}")
        if status in (404, 410):
            raise Gone(f"HTTP {status}", status)
        if status >= 400:
            raise FetchFailed(f"HTTP {status}")
        # `html_only`: only the types ragcord reads (HTML, PDF, Markdown, RST, text); NotHtml names others.
        kind = page_format(content_type, str(response.url)) if html_only else None
        if kind is Format.PDF and not max_bytes:
            cap = self.settings.max_pdf_bytes
        encoding = response.headers.get("content-encoding", "")
        decoders = _decoders(encoding)
        declared = response.headers.get("content-length")
        if not truncate and declared and declared.isdigit() and int(declared) > cap:
            raise TooLarge(f"too large ({int(declared)} bytes, limit {cap})")
        body = bytearray()
        sent = 0
        truncated = False
        for raw in response.iter_raw():
            sent += len(raw)
            data = raw
            for decoder in decoders:
                data = decoder.feed(data, cap - len(body))
            if len(body) + len(data) > cap:
                if truncate:
                    body += data[: cap - len(body)]
                    truncated = True
                    break
                if decoders:
                    raise TooLarge(
                        f"too large: over {cap} bytes once decompressed ({encoding}, "
                        f"{sent} bytes received so far)"
                    )
                raise TooLarge(f"too large (over {cap} bytes)")
            body += data
            if sent > cap and not truncate:
                raise TooLarge(f"too large (over {cap} bytes sent)")
        if kind in (Format.HTML, Format.MARKDOWN, Format.RST, Format.TEXT) and b"\x00" in body[:8192]:
            raise NotHtml(f"not {kind.value} (binary content served as {content_type})")
        return self._Response(
            status,
            content_type,
            response.charset_encoding,
            None,
            bytes(body),
            truncated,
            etag,
            last_modified,
        )


class RobotsCache:
    """robots.txt per origin, read with Protego (RFC 9309: longest match, `*` and `$`), kept `ttl` seconds.

    A missing robots.txt (4xx) allows everything; one that redirects somewhere refused disallows everything.
    Only the first 500 KiB are read (RFC 9309 2.5); what cannot be parsed (binary) is no rule, so it allows.
    One that cannot be read right now (timeout, 429, 5xx) is not cached: the page is retried like any
    transient failure, and fails with that reason if robots.txt stays unreadable.
    """

    AGENT = "ragcord"
    MAX_BYTES = 500 * 1024  # RFC 9309 2.5: at least 500 KiB are read

    def __init__(self, fetcher: Fetcher, *, ttl: float = 3600.0) -> None:
        self.fetcher = fetcher
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Protego]] = {}
        self._refused: dict[str, str] = {}  # origin -> why its robots.txt was refused (all disallowed)
        self._lock = threading.Lock()

    @staticmethod
    def _origin(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    def _cached(self, origin: str) -> Protego | None:
        with self._lock:
            cached = self._cache.get(origin)
        return cached[1] if cached is not None and cached[0] >= time.monotonic() else None

    def known(self, url: str) -> bool:
        """True when the site's robots.txt is read and fresh: `allowed` will not fetch."""
        return self._cached(self._origin(url)) is not None

    def crawl_delay(self, url: str) -> float | None:
        """The site's Crawl-delay for us, in seconds, when its robots.txt is read and names one."""
        rules = self._cached(self._origin(url))
        if rules is None:
            return None
        delay = rules.crawl_delay(self.AGENT)
        return float(delay) if delay is not None else None

    def sitemaps(self, url: str) -> list[str]:
        """The `Sitemap:` lines of the site's robots.txt, once it is read (else [])."""
        rules = self._cached(self._origin(url))
        return list(rules.sitemaps) if rules is not None else []

    def why_refused(self, url: str) -> str | None:
        """Why the site's robots.txt was refused, when it was (the site then counts as disallowed)."""
        with self._lock:
            return self._refused.get(self._origin(url))

    def allowed(self, url: str) -> bool:
        origin = self._origin(url)
        rules = self._cached(origin)
        if rules is None:
            rules = self._load(origin)
            with self._lock:
                self._cache[origin] = (time.monotonic() + self.ttl, rules)
        return bool(rules.can_fetch(url, self.AGENT))

    def _load(self, origin: str) -> Protego:
        try:
            page = self.fetcher.fetch(
                f"{origin}/robots.txt", html_only=False, max_bytes=self.MAX_BYTES, truncate=True
            )
        except DeadlineExceeded as exc:
            raise TransientFetchError(f"robots.txt of {origin} could not be read: {exc}") from None
        except FetchFailed:
            return Protego.parse("")  # 4xx: no robots.txt, everything is allowed
        except RetryLater as exc:  # the site's back-off holds for its pages too
            raise RetryLater(f"robots.txt of {origin} could not be read: {exc}", exc.retry_after) from None
        except TransientFetchError as exc:
            raise TransientFetchError(f"robots.txt of {origin} could not be read: {exc}") from None
        except (TooLarge, Blocked) as exc:
            log.warning("robots.txt of %s refused (%s): treating the site as disallowed", origin, exc)
            with self._lock:
                self._refused[origin] = str(exc)
            return Protego.parse("User-agent: *\nDisallow: /")
        with self._lock:
            self._refused.pop(origin, None)
        if page.truncated:
            log.warning("robots.txt of %s is over %d bytes: only those are read", origin, self.MAX_BYTES)
        text = page.body.decode("utf-8", errors="replace")
        if "\x00" in text:
            log.warning("robots.txt of %s is binary: no rules, everything is allowed", origin)
            return Protego.parse("")
        try:
            return Protego.parse(text)
        except Exception as exc:  # noqa: BLE001 - an unparseable robots.txt has no rules (RFC 9309 2.2)
            log.warning("robots.txt of %s cannot be parsed (%r): everything is allowed", origin, exc)
            return Protego.parse("")


def extract(page: FetchedPage, settings: Settings | None = None) -> ExtractedPage:
    """Title, canonical URL, every link and the content's sections, whatever the page's type (HTML, PDF,
    Markdown, RST, text); `settings` bound what a PDF or markup file may cost. Raises ExtractionFailed."""
    limits = ReadLimits.from_settings(settings) if settings is not None else ReadLimits()
    return read_page(page.body, page.url, content_type=page.content_type, charset=page.charset, limits=limits)
