"""A loopback site a test edits between crawls: pages with an ETag, a Last-Modified or neither, pages that
answer 404 or 410, and raw files (robots.txt, sitemaps). It records every request's conditional headers."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit


@dataclass
class Page:
    body: bytes
    validator: str = "none"  # "etag", "last-modified" or "none"
    status: int = 200  # 404/410: gone
    content_type: str = "text/html; charset=utf-8"
    modified: float = field(default=1_700_000_000.0)  # what Last-Modified says

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@dataclass(frozen=True)
class Request:
    path: str
    if_none_match: str | None
    if_modified_since: str | None
    status: int

    @property
    def conditional(self) -> bool:
        return self.if_none_match is not None or self.if_modified_since is not None


def html(title: str, text: str, links: list[str] = ()) -> bytes:  # type: ignore[assignment]
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body><main><h1>{title}</h1>"
        f"<p>{text}</p><ul>{anchors}</ul></main></body></html>"
    ).encode()


class FreshSite:
    """Serves `pages` (path -> Page) on 127.0.0.1 at a free port until close(); editable at any time."""

    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                path = urlsplit(self.path).path
                inm, ims = self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")
                with site._lock:
                    page = site.pages.get(path)
                status, headers, body = 404, {}, b"<h1>404 Not Found</h1>"
                if page is not None and page.status != 200:
                    status = page.status
                elif page is not None:
                    status, body = 200, page.body
                    headers["Content-Type"] = page.content_type
                    if page.validator == "etag":
                        headers["ETag"] = page.etag
                        if inm == page.etag:
                            status, body = 304, b""
                    elif page.validator == "last-modified":
                        headers["Last-Modified"] = formatdate(page.modified, usegmt=True)
                        if ims == headers["Last-Modified"]:
                            status, body = 304, b""
                with site._lock:
                    site.requests.append(Request(path, inm, ims, status))
                self.send_response(status)
                headers.setdefault("Content-Type", "text/html; charset=utf-8")
                headers["Content-Length"] = str(len(body))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def set(self, path: str, page: Page) -> None:
        with self._lock:
            self.pages[path] = page

    def requests_of(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def forget_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FreshSite:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
