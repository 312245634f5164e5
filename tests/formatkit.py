"""Files of other formats for tests: real ones Debian ships (installed when missing, like the real-site
matrix), PDFs written byte by byte (text pages, bombs), and a loopback server that serves any bytes under
any content type."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import CI

# Real files, each from a Debian package: (path, package).
PDF_SPEC = ("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf", "shared-mime-info")
MARKDOWN_README = ("/usr/share/doc/python3-httplib2/README.md", "python3-httplib2")
RST_README = ("/usr/share/doc/libjansson4/README.rst", "libjansson4")
TEXT_FILE = ("/usr/share/doc/python3-yaml/copyright", "python3-yaml")


def debian_file(path: str, package: str) -> Path:
    """A real file a Debian package ships; installed with apt when missing (skipped where that cannot be
    done, except under CI, where it fails)."""
    if not Path(path).is_file():
        reason = _install(package)
        if not Path(path).is_file():
            if CI:
                raise RuntimeError(f"{path} (Debian package {package}) is missing: {reason}")
            pytest.skip(f"{path} (Debian package {package}) is missing and cannot be installed: {reason}")
    return Path(path)


def _install(package: str) -> str:
    if shutil.which("apt-get") is None:
        return "no apt-get"
    sudo: list[str] = []
    if os.geteuid() != 0:
        if not (
            shutil.which("sudo")
            and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0
        ):
            return "not root and no password-less sudo"
        sudo = ["sudo", "-n", "-E"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in ([*sudo, "apt-get", "update", "-qq"], [*sudo, "apt-get", "install", "-y", "-qq", package]):
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return f"{' '.join(args)} exited {done.returncode}: {done.stderr[-500:]}"
    return "installed"


# -- PDFs written by hand: every object, the cross-reference table and the trailer, offsets exact.


def pdf_from_objects(objects: list[bytes], info: int | None = None) -> bytes:
    """A PDF whose object n (1-based) is objects[n - 1]; object 1 must be the catalog, `info` the Info."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    info_entry = f" /Info {info} 0 R" if info else ""
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info_entry} >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _stream(data: bytes, *, compress: bool = False) -> bytes:
    if compress:
        data = zlib.compress(data, 9)
        return f"<< /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode() + data + b"\nendstream"
    return f"<< /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_pdf(pages: list[list[str]], *, title: str = "", link: str = "", repeat: int = 1) -> bytes:
    """A PDF of Helvetica text: each page its lines, top to bottom; `link` a URI annotation on page 1;
    `repeat` > 1 lists the pages that many times in the page tree (a page-count bomb)."""
    # 1 catalog, 2 pages, 3 font, 4 info; then per page: the page and its content stream.
    kids = " ".join(f"{5 + 2 * i} 0 R" for i in range(len(pages)) for _ in range(repeat))
    count = len(pages) * repeat
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        f"<< /Title ({_escape(title)}) >>".encode(),
    ]
    for index, lines in enumerate(pages):
        ops = ["BT /F1 11 Tf 14 TL 60 780 Td"] + [f"({_escape(line)}) Tj T*" for line in lines] + ["ET"]
        annots = ""
        if link and index == 0:
            action = f"<< /S /URI /URI ({link}) >>"
            annots = f" /Annots [<< /Type /Annot /Subtype /Link /Rect [0 0 100 20] /A {action} >>]"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {6 + 2 * index} 0 R{annots} >>".encode()
        )
        objects.append(_stream("\n".join(ops).encode("latin-1")))
    return pdf_from_objects(objects, info=4)


def page_count_bomb(kids: int) -> bytes:
    """One text page referenced `kids` times by the page tree: a PDF of `kids` pages in a few hundred KB."""
    return text_pdf([["The only real page of this PDF."]], repeat=kids)


def stream_bomb(inflated: int) -> bytes:
    """A one-page PDF whose content stream is ~inflated/1000 bytes, `inflated` bytes once inflated."""
    content = b"BT /F1 11 Tf 60 780 Td (Deflate bomb) Tj ET\n" + b" " * inflated
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Resources << /Font << /F1 3 0 R >> >> "
        b"/Contents 5 0 R >>",
        _stream(content, compress=True),
    ]
    return pdf_from_objects(objects)


def nested_pdf(depth: int) -> bytes:
    """A one-page PDF whose page carries an array nested `depth` levels deep."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Deep " + b"[" * depth + b"]" * depth + b" >>",
    ]
    return pdf_from_objects(objects)


# -- a loopback server of any bytes under any content type

Route = tuple[str, bytes] | Callable[[BaseHTTPRequestHandler], None]


class FileServer:
    """Serves `routes` ({path: (content type, body)} or {path: handler}) on 127.0.0.1; 404 otherwise."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                route = server.routes.get(self.path.split("?", 1)[0])
                if callable(route):
                    route(self)
                    return
                content_type, body = route if route is not None else ("text/html", b"<h1>404</h1>")
                self.send_response(200 if route is not None else 404)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the crawler hung up at its size cap

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def streamed(content_type: str, total: int, piece: bytes) -> Callable[[BaseHTTPRequestHandler], None]:
    """A handler sending `total` bytes of repeated `piece`, with no Content-Length (read until closed)."""

    def handle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.end_headers()
        block = piece * max(1, 65536 // len(piece))
        sent = 0
        try:
            while sent < total:
                handler.wfile.write(block)
                sent += len(block)
        except OSError:
            pass  # the crawler hung up at its cap

    return handle
