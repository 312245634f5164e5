"""`ragcord demo`: crawl a bundled sample documentation site into knowledge base `demo`.

The sample site (a fictional "Quillstack" project's docs, shipped in cli/demo_site/) is served on
loopback, which a plain `ragcord serve` refuses to crawl (RAGCORD_ALLOW_PRIVATE_NETWORKS is off, and
both its admin API and its workers check). Rather than asking the operator to restart their server
with private networks allowed, the demo runs a short-lived `ragcord serve` of its own that allows
them, for itself only: on a free loopback port, without metrics ports or the bot, and under its own
Redis key prefix (`<prefix>-demo`), so its crawl messages go to its own Dramatiq queue and the main
server's workers (which would refuse the loopback pages) never see them. It shares the main server's
Redis, data directory and store, so once it exits the main server answers from knowledge base `demo`.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cli.admin import Admin
from cli.console import console, err
from cli.jobs import follow_job
from ragcord.errors import RagcordError
from ragcord.settings import Settings

log = logging.getLogger(__name__)

SITE_ROOT = Path(__file__).resolve().parent / "demo_site"
KNOWLEDGE_BASE = "demo"
# A fixed port keeps the pages' URLs (the citations) the same on every run, so a second demo updates the
# knowledge base instead of adding a second copy of every page under new URLs.
SITE_PORT = 8765
READY_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 60
QUESTIONS = ("How do I rotate the secret key?", "How do I retry a failed job?")


def add_demo_command(sub: Any) -> None:
    """Register `demo` (sub is what argparse's add_subparsers() returned)."""
    p = sub.add_parser("demo", help="crawl a bundled sample docs site into knowledge base 'demo'")
    p.add_argument("--kb", default=KNOWLEDGE_BASE, help=f"knowledge base (default: {KNOWLEDGE_BASE})")
    p.add_argument(
        "--port", type=int, default=SITE_PORT, help=f"the sample site's port (default: {SITE_PORT})"
    )
    p.set_defaults(fn=cmd_demo)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    if not (SITE_ROOT / "docs" / "index.html").is_file():
        raise RagcordError(f"the sample site is missing from {SITE_ROOT} (reinstall ragcord)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with serve_site(SITE_ROOT, args.port) as site_url, demo_server(settings) as address:
        admin = Admin(settings, address)
        job = admin.call(
            "StartCrawl",
            admin.pb.StartCrawlRequest(
                url=f"{site_url}/docs/",
                knowledge_base=args.kb,
                # The fixture's index links to pages a plain file server cannot serve (they test the crawler).
                exclude_patterns=["/special/"],
            ),
        )
        console.print(f"crawling the sample site {job.url} into knowledge base {job.knowledge_base}")
        status = follow_job(admin, job.id)
    if status == 0:
        _print_next_steps(settings, args.kb, args.port, job.id)
    return status


@contextmanager
def serve_site(root: Path, port: int) -> Iterator[str]:
    """Serve root on a loopback port from a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise RagcordError(
            f"cannot serve the sample site on 127.0.0.1:{port} ({exc.strerror}): choose another with --port"
        ) from None
    thread = threading.Thread(target=server.serve_forever, name="demo-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """At debug level: the demo's own output is the crawl's progress."""
        log.debug("sample site: " + format, *args)


@contextmanager
def demo_server(settings: Settings) -> Iterator[str]:
    """A `ragcord serve` that may crawl loopback, for the demo only; yields its admin address."""
    address = f"127.0.0.1:{_free_port()}"
    env = {
        **os.environ,
        "RAGCORD_ALLOW_PRIVATE_NETWORKS": "true",
        "RAGCORD_GRPC_ADDRESS": address,
        "RAGCORD_KEY_PREFIX": f"{settings.key_prefix}-demo",
        "RAGCORD_METRICS_ADDRESS": "",
        "RAGCORD_WORKER_METRICS_PORT": "0",
        "RAGCORD_WORKER_PROCESSES": "1",
        "DISCORD_TOKEN": "",
        "RAGCORD_DISCORD_TOKEN": "",
    }
    log_path = settings.data_dir / "demo-serve.log"
    console.print(
        f"starting a private server for the demo on {address} (its log: {log_path})", soft_wrap=True
    )
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            _wait_ready(settings, address, process, log_path)
            yield address
        finally:
            process.terminate()  # SIGTERM: its workers finish their pages, then it exits
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(settings: Settings, address: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Until the demo server answers; a RagcordError with the end of its log if it exits or hangs."""
    admin = Admin(settings, address)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RagcordError(f"the demo server exited ({process.returncode}):\n{_tail(log_path)}")
        try:
            admin.call("ListJobs", admin.pb.ListJobsRequest(page_size=1), timeout=2)
            return
        except admin.grpc.RpcError as exc:
            if exc.code() not in (admin.grpc.StatusCode.UNAVAILABLE, admin.grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
        time.sleep(0.3)
    raise RagcordError(f"the demo server did not answer in {READY_TIMEOUT_SECONDS}s:\n{_tail(log_path)}")


def _print_next_steps(settings: Settings, kb: str, port: int, job_id: str) -> None:
    if not _answers(settings):
        err.print(
            f"[yellow]note[/]: no server answers on {settings.grpc_address}: start `make serve` "
            "(or `ragcord serve`) in another terminal to ask questions"
        )
    # Its own key prefix keeps the demo's crawl away from the main workers, and its job with it.
    console.print(
        f"\nJob {job_id} belonged to the demo's own server, which has stopped: `ragcord jobs` and "
        f"`ragcord watch` on the server of `make serve` do not know it. Knowledge base {kb} is shared: "
        "that server answers from it.",
        soft_wrap=True,
        markup=False,
    )
    console.print("\nNext, ask the sample docs (through the server of `make serve`):")
    for question in QUESTIONS:
        console.print(f'  .venv/bin/ragcord ask "{question}" --kb {kb}', soft_wrap=True, markup=False)
    console.print(f"  .venv/bin/ragcord chat --kb {kb}", soft_wrap=True, markup=False)
    console.print(
        f"\nThe answers cite the sample site, served only while the demo ran; to open the links:\n"
        f"  python3 -m http.server {port} --bind 127.0.0.1 -d {SITE_ROOT}",
        soft_wrap=True,
        markup=False,
    )


def _answers(settings: Settings) -> bool:
    """Whether the main admin API is up (any reply, even Unauthenticated, means it is)."""
    admin = Admin(settings, None)
    try:
        admin.call("ListJobs", admin.pb.ListJobsRequest(page_size=1), timeout=3)
    except admin.grpc.RpcError as exc:
        return exc.code() not in (admin.grpc.StatusCode.UNAVAILABLE, admin.grpc.StatusCode.DEADLINE_EXCEEDED)
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
