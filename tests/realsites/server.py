"""A loopback HTTP server for one documentation tree on disk, as a plain static web server would serve it.

Not tests/sitekit.FixtureSite: that one refuses paths whose real location is outside its root, and
Debian's doc packages are full of symlinks (bash-doc's bashref.html points into ../bash/, Sphinx
packages link _static/ into /usr/share/javascript), which any web server in front of them follows.
"""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static files (symlinks followed), no directory listings, nothing printed."""

    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".html": "text/html; charset=utf-8",
        ".htm": "text/html; charset=utf-8",
        ".xhtml": "application/xhtml+xml; charset=utf-8",
        ".txt": "text/plain; charset=utf-8",
        ".js": "text/javascript",
        ".svg": "image/svg+xml",
    }

    def list_directory(self, path: str) -> None:  # type: ignore[override]  # 404, never a listing
        """A directory without index.html is a 404 here, as on most documentation hosts."""
        self.send_error(404, "Not Found")
        return None

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Log nothing."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class DocSite:
    """`root` served on 127.0.0.1 at a free port (or `port`) from a daemon thread, until close()."""

    def __init__(self, root: Path, port: int = 0) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"documentation root {self.root} is not a directory")
        self._server = _Server(("127.0.0.1", port), partial(_QuietHandler, directory=str(self.root)))
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"docsite-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def url(self, path: str = "/") -> str:
        """The absolute URL of `path` on this server (without the port when it is 80)."""
        host = "127.0.0.1" if self.port == 80 else f"127.0.0.1:{self.port}"
        return f"http://{host}" + (path if path.startswith("/") else "/" + path)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(2.0)

    def __enter__(self) -> DocSite:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
