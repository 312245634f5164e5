"""A loopback HTTP server for tests: the static fixture site plus misbehaving routes under /docs/special/."""

from __future__ import annotations

import collections
import functools
import mimetypes
import os
import select
import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

HUGE_BYTES = 50 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
CLOSE_JOIN_SECONDS = 2.0

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".pdf": "application/pdf",
    ".json": "application/json",
    ".css": "text/css; charset=utf-8",
}

MALFORMED_HTML = b"""<html><head><title>Legacy Quillstack 1.x notes</title>
<body><div class="content"><div><h1>Legacy Quillstack 1.x notes
<p>These notes describe the original 1.x series of Quillstack, which used an INI file called quill.ini
and a worker command named quillworker. <b>Support for 1.x ended in 2021</b> and no security fixes are
published for it any more.</div></div></div>
<p>In 1.x every task was registered with a decorator called <i>job</i>, and results were always stored
in Redis whether you needed them or not. Retries were configured globally with one setting, max_attempts.
<div><span>The scheduler ran inside the worker, so two workers meant every periodic job ran twice.
</td></tr></table>
<p>If you still run 1.x, upgrade to 2.x first and then to 3.x; jumping directly is not supported
because the message format changed twice.
</div></div><p class="note">Archived page, kept for reference only. Last reviewed in March 2022
<p
"""

LATIN1_TEXT = """<!DOCTYPE html>
<html lang="de">
<head><title>Notes for European deployments</title></head>
<body>
<main>
<h1>Notes for European deployments</h1>
<p>Many Quillstack users run their workers in data centres in Frankfurt, München and Zürich. This page
collects the questions that come up when texts contain characters such as é, ü, ö or ß, for example in a
customer name like “Café Müller” or a street called Schloßstraße.</p>
<p>Task arguments are always serialised as UTF-8 JSON, so “Grüße aus Köln” arrives at the worker
unchanged. Problems usually start earlier: a CSV export from an old accounting system is often encoded in
Windows-1252, and reading it as UTF-8 raises an error on the first ‘ä’. Decode such files explicitly
before you send them to a task.</p>
<p>Prices in euro are written as 12,50 € in Germany and France — the money filter uses the active
locale, so you don’t need to format them by hand.</p>
</main>
</body>
</html>
"""


GZIP_BOMB_BYTES = 10 * 1024**3  # what the gzip bomb would inflate to: 10 GiB
MANY_LINKS = 100_000
TRICKLE_BYTES = 600  # one a second: ten minutes of body


@functools.cache
def html_page(title: str, body: str) -> str:
    """A minimal page for a site a test writes: its title and `body` as the main content."""
    return f"<!doctype html><html><head><title>{title}</title></head><body><main>{body}</main></body></html>"


def _gzip_bomb_parts() -> tuple[bytes, bytes, int]:
    """(gzip header, one full-flushed deflate block of 1 MiB of spaces, its size): the block repeats as is,
    so the server sends a 10 GiB page for the price of ~10 MB of bytes and no compression work per request."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = compressor.compress(b"<!DOCTYPE html><html><head><title>Bomb</title></head><body><p>")
    head += compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(b" " * (1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return head, block, 1 << 20


def _huge_html(total: int) -> Iterator[bytes]:
    """Yield exactly `total` bytes of valid-looking HTML in CHUNK_BYTES pieces, lazily."""
    head = b"<!DOCTYPE html><html><head><title>Full API object dump</title></head><body><main><h1>Dump</h1>\n"
    tail = b"</main></body></html>\n"
    line = b"<p>Quillstack object dump line with filler text that repeats to make the page very large.</p>\n"
    block = (line * (CHUNK_BYTES // len(line) + 1))[:CHUNK_BYTES]
    remaining = total - len(head) - len(tail)
    yield head
    while remaining > 0:
        piece = block[: min(remaining, CHUNK_BYTES)]
        remaining -= len(piece)
        yield piece
    yield tail


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that keeps quiet and remembers the FixtureSite it serves."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False  # FixtureSite.close joins the handler threads itself, with a deadline

    site: FixtureSite

    def handle_error(self, request: object, client_address: object) -> None:
        """Record unexpected handler errors instead of printing them to stderr."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            self.site.errors.append(repr(exc))


class _Handler(BaseHTTPRequestHandler):
    """Serves files under the site root and the special routes."""

    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection; huge-chunked switches to 1.1 for itself
    timeout = 30  # socket timeout: an idle client cannot pin a thread forever
    server_version = "FixtureSite/1.0"

    def setup(self) -> None:
        super().setup()
        self.server.site._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.site._track(self.connection, add=False)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Log nothing."""

    def do_GET(self) -> None:
        self._dispatch(body=True)

    def do_HEAD(self) -> None:
        self._dispatch(body=False)

    # -- plumbing

    @property
    def site(self) -> FixtureSite:
        return self.server.site

    def _dispatch(self, *, body: bool) -> None:
        self.site._record(self.path)
        # In flight while the site holds the request (its delay): once the response is written the client
        # may send its next request before this thread gets here again, which is no overlap of the client's.
        self.site._enter()
        try:
            if self.site.delay and self.site._stopping.wait(self.site.delay):
                return
        finally:
            self.site._leave()
        path = unquote(urlsplit(self.path).path)
        route = SPECIAL_ROUTES.get(path)
        if route is None:
            route = next((r for prefix, r in PREFIX_ROUTES.items() if path.startswith(prefix)), None)
        if path == "/robots.txt" and self.site.robots is not None:
            self._send(HTTPStatus.OK, self.site.robots, "text/plain", write_body=body)
        elif route is not None:
            route(self, body)
        else:
            self._serve_file(path, body)

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
        *,
        write_body: bool = True,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if write_body and body:
            self.wfile.write(body)

    def _redirect(self, status: int, location: str, write_body: bool) -> None:
        self._send(
            status,
            f'<a href="{location}">moved</a>'.encode(),
            headers={"Location": location},
            write_body=write_body,
        )

    def _not_found(self, write_body: bool) -> None:
        self._send(HTTPStatus.NOT_FOUND, b"<h1>404 Not Found</h1>", write_body=write_body)

    def _serve_file(self, path: str, write_body: bool) -> None:
        root = self.site.root
        # `..` is folded away first; a symlink inside the root is followed (the fixture site's docs/ is the
        # demo site's, linked rather than copied).
        target = Path(os.path.normpath(root / path.lstrip("/")))
        if not target.is_relative_to(root):
            return self._not_found(write_body)
        if target.is_dir():
            if not path.endswith("/"):
                return self._redirect(HTTPStatus.MOVED_PERMANENTLY, path + "/", write_body)
            target = target / "index.html"
        if not target.is_file():
            return self._not_found(write_body)
        content_type = CONTENT_TYPES.get(target.suffix.lower()) or (
            mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        )
        self._send(HTTPStatus.OK, target.read_bytes(), content_type, write_body=write_body)

    def _client_gone(self) -> bool:
        """True when the peer has closed its end of the connection."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # -- special routes

    def _malformed(self, write_body: bool) -> None:
        self._send(HTTPStatus.OK, MALFORMED_HTML, write_body=write_body)

    def _latin1(self, write_body: bool) -> None:
        self._send(HTTPStatus.OK, LATIN1_TEXT.encode("cp1252"), "text/html", write_body=write_body)

    def _huge(self, write_body: bool) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(HUGE_BYTES))
        self.end_headers()
        if not write_body:
            return
        for piece in _huge_html(HUGE_BYTES):
            if self.site._stopping.is_set():
                break
            self.wfile.write(piece)

    def _huge_chunked(self, write_body: bool) -> None:
        self.protocol_version = "HTTP/1.1"  # chunked transfer coding does not exist in HTTP/1.0
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        if not write_body:
            return
        for piece in _huge_html(HUGE_BYTES):
            if self.site._stopping.is_set():
                return
            self.wfile.write(b"%X\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def _loop_a(self, write_body: bool) -> None:
        self._redirect(HTTPStatus.FOUND, "/docs/special/loop-b.html", write_body)

    def _loop_b(self, write_body: bool) -> None:
        self._redirect(HTTPStatus.FOUND, "/docs/special/loop-a.html", write_body)

    def _slow(self, write_body: bool) -> None:
        while not self.site._stopping.wait(0.1):
            if self._client_gone():
                break
        self.close_connection = True

    def _gone(self, write_body: bool) -> None:
        self._not_found(write_body)

    def _error(self, write_body: bool) -> None:
        body = b"<h1>500 Internal Server Error</h1>"
        self._send(HTTPStatus.INTERNAL_SERVER_ERROR, body, write_body=write_body)

    def _moved(self, write_body: bool) -> None:
        self._redirect(HTTPStatus.MOVED_PERMANENTLY, "/blog/post.html", write_body)

    def _redirect_in(self, write_body: bool) -> None:
        # The query keeps the target a different URL from /docs/installation.html (same content): a crawler
        # reports a duplicate, and hits("/docs/installation.html") still counts only direct fetches.
        self._redirect(HTTPStatus.MOVED_PERMANENTLY, REDIRECT_IN_TARGET, write_body)

    # -- hostile routes (under /hostile/): what a crawler must survive

    def _query(self, name: str, default: str = "") -> str:
        return parse_qs(urlsplit(self.path).query).get(name, [default])[0]

    def _hostile_redirect(self, write_body: bool) -> None:
        """/hostile/redirect?to=URL: a 302 to URL (any scheme), so chains can be built from links."""
        self._redirect(HTTPStatus.FOUND, self._query("to", "/"), write_body)

    def _gzip_bomb(self, write_body: bool) -> None:
        head, block, size = _gzip_bomb_parts()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        if not write_body:
            return
        self.wfile.write(head)
        for _ in range(GZIP_BOMB_BYTES // size):
            if self.site._stopping.is_set():
                return
            self.wfile.write(block)

    def _brotli_bomb(self, write_body: bool) -> None:
        """Content-Encoding: br the crawler never asked for; a real bomb when the brotli module is here."""
        try:
            import brotli  # type: ignore[import-not-found]

            payload = brotli.compress(b" " * (64 << 20), quality=5)
        except ImportError:
            payload = (
                b"\x1b\xff\xff\x1f" + bytes(range(256)) * 64
            )  # not valid brotli: must not be read at all
        self._send(HTTPStatus.OK, payload, headers={"Content-Encoding": "br"}, write_body=write_body)

    def _trickle(self, write_body: bool) -> None:
        """Headers at once, then the body one byte a second (a read timeout never fires)."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(TRICKLE_BYTES))
        self.end_headers()
        if not write_body:
            return
        for _ in range(TRICKLE_BYTES):
            if self.site._stopping.wait(1.0) or self._client_gone():
                return
            self.wfile.write(b" ")
            self.wfile.flush()

    def _many_links(self, write_body: bool) -> None:
        links = "".join(f'<a href="/hostile/links/p{i}.html">p{i}</a>\n' for i in range(MANY_LINKS))
        page = "<!DOCTYPE html><html><head><title>Every page</title></head><body><main><h1>Every page</h1>"
        page += f"<p>An index of {MANY_LINKS} pages, each one link.</p>{links}</main></body></html>"
        self._send(HTTPStatus.OK, page.encode(), write_body=write_body)

    def _small_page(self, write_body: bool) -> None:
        path = urlsplit(self.path).path
        page = (
            f"<!DOCTYPE html><html><head><title>Page {path}</title></head><body><main><h1>Page {path}</h1>"
            f"<p>This page, {path}, is one of many generated pages.</p></main></body></html>"
        )
        self._send(HTTPStatus.OK, page.encode(), write_body=write_body)

    def _calendar(self, write_body: bool) -> None:
        """/hostile/calendar/YYYY-MM.html: every month links to the next and the previous one, without end."""
        name = urlsplit(self.path).path.rsplit("/", 1)[-1].removesuffix(".html")
        try:
            year, month = (int(part) for part in name.split("-"))
        except ValueError:
            return self._not_found(write_body)
        index = year * 12 + month - 1
        other = [f"{(i // 12):04d}-{(i % 12) + 1:02d}" for i in (index - 1, index + 1, index + 12)]
        links = "".join(f'<a href="/hostile/calendar/{m}.html">{m}</a> ' for m in other)
        page = (
            f"<!DOCTYPE html><html><head><title>Events in {name}</title></head><body><main>"
            f"<h1>Events in {name}</h1><p>Nothing is planned for {name}. {links}</p></main></body></html>"
        )
        self._send(HTTPStatus.OK, page.encode(), write_body=write_body)

    def _one_line(self, write_body: bool) -> None:
        """A 20 MB page in one line, chunked (no Content-Length to refuse it by)."""
        self.protocol_version = "HTTP/1.1"
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        if not write_body:
            return
        piece = b"word " * (CHUNK_BYTES // 5)
        pieces = [b"<!DOCTYPE html><html><head><title>One line</title></head><body><p>"]
        pieces += [piece] * (20 * 1024 * 1024 // len(piece)) + [b"</p></body></html>"]
        for part in pieces:
            if self.site._stopping.is_set() or self._client_gone():
                return
            self.wfile.write(b"%X\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n\r\n")

    def _bad_encoding(self, write_body: bool) -> None:
        """Declared UTF-8 (or an unknown charset), with bytes that are not valid in it."""
        label = self._query("charset", "utf-8")
        text = (
            "<!DOCTYPE html><html><head><title>Broken bytes</title></head><body><main><h1>Broken bytes</h1>"
            "<p>This page about the Quillstack encoder says caf\u00e9 in Latin-1 bytes inside a UTF-8 page, "
            "so a reader must replace what it cannot decode and keep the rest.</p></main></body></html>"
        )
        body = text.encode("latin-1") + b"\xff\xfe\xc3\x28 trailing words"
        self._send(HTTPStatus.OK, body, f"text/html; charset={label}", write_body=write_body)

    def _busy(self, write_body: bool) -> None:
        """429 with Retry-After for the first `site.busy_replies` requests, then a page."""
        with self.site._lock:
            busy = self.site.busy_replies > 0
            self.site.busy_replies -= busy
        if busy:
            self._send(
                HTTPStatus.TOO_MANY_REQUESTS,
                b"slow down",
                headers={"Retry-After": self.site.retry_after},
                write_body=write_body,
            )
        else:
            self._small_page(write_body)


REDIRECT_IN_TARGET = "/docs/installation.html"

SPECIAL_ROUTES: dict[str, Callable[[_Handler, bool], None]] = {
    "/docs/special/malformed.html": _Handler._malformed,
    "/docs/special/huge.html": _Handler._huge,
    "/docs/special/huge-chunked.html": _Handler._huge_chunked,
    "/docs/special/loop-a.html": _Handler._loop_a,
    "/docs/special/loop-b.html": _Handler._loop_b,
    "/docs/special/slow.html": _Handler._slow,
    "/docs/special/latin1.html": _Handler._latin1,
    "/docs/special/gone.html": _Handler._gone,
    "/docs/special/error.html": _Handler._error,
    "/docs/special/moved.html": _Handler._moved,
    "/docs/special/redirect-in.html": _Handler._redirect_in,
    "/hostile/redirect": _Handler._hostile_redirect,
    "/hostile/gzip-bomb.html": _Handler._gzip_bomb,
    "/hostile/brotli-bomb.html": _Handler._brotli_bomb,
    "/hostile/trickle.html": _Handler._trickle,
    "/hostile/many-links.html": _Handler._many_links,
    "/hostile/one-line.html": _Handler._one_line,
    "/hostile/bad-encoding.html": _Handler._bad_encoding,
    "/hostile/busy.html": _Handler._busy,
}
# Matched by prefix when no route above is the path itself.
PREFIX_ROUTES: dict[str, Callable[[_Handler, bool], None]] = {
    "/hostile/links/": _Handler._small_page,
    "/hostile/pages/": _Handler._small_page,
    "/hostile/calendar/": _Handler._calendar,
}


class FixtureSite:
    """The fixture site served on 127.0.0.1 at a free port, in a daemon thread, until close()."""

    def __init__(self, root: Path, delay: float = 0.0, *, robots: bytes | None = None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"fixture site root {self.root} is not a directory")
        self.delay = delay
        self.robots = robots  # served as /robots.txt instead of the file, when given
        self.busy_replies = 0  # /hostile/busy.html answers 429 this many more times
        self.retry_after = "1"
        self.in_flight = 0  # requests the site holds now (during its `delay`)
        self.max_in_flight = 0  # the most it ever held at once
        self._arrivals: list[tuple[float, str]] = []
        self.errors: list[str] = []  # unexpected handler exceptions (nothing is printed)
        self._lock = threading.Lock()
        self._requests: list[str] = []
        self._hits: collections.Counter[str] = collections.Counter()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._stopping = threading.Event()
        self._closed = False
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.site = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fixture-site-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def __enter__(self) -> FixtureSite:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        """The absolute URL of `path` on this server."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    @property
    def requests(self) -> list[str]:
        """A snapshot of the request targets (path and query) received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def hits(self, path: str) -> int:
        """How many requests had exactly this target (a query string counts as part of it)."""
        with self._lock:
            return self._hits[path]

    @property
    def arrivals(self) -> list[tuple[float, str]]:
        """(time.monotonic() when it arrived, target) of every request so far, in arrival order."""
        with self._lock:
            return list(self._arrivals)

    def reset(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()
            self._hits.clear()
            self._arrivals.clear()
            self.max_in_flight = self.in_flight

    def close(self) -> None:
        """Stop serving: wake sleeping handlers, drop open connections and join threads (bounded)."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            connections = dict(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        self._thread.join(CLOSE_JOIN_SECONDS)
        deadline = time.monotonic() + CLOSE_JOIN_SECONDS
        for thread in connections.values():
            thread.join(max(0.0, deadline - time.monotonic()))

    def _record(self, target: str) -> None:
        with self._lock:
            self._requests.append(target)
            self._hits[target] += 1
            self._arrivals.append((time.monotonic(), target))

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections[conn] = threading.current_thread()
            else:
                self._connections.pop(conn, None)
