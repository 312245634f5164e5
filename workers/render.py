"""Pages rendered by JavaScript: a headless Chromium (Debian's `chromium`) driven over the DevTools protocol.

One browser per worker process, started on the first page that needs it, reused across pages (each page in
a browser context of its own, disposed after it), started again if it dies, closed at worker shutdown.

The browser never touches the network itself: every request a page makes is paused (`Fetch.enable`) and
answered by the crawler's own `Fetcher` (address guard at connect, size caps, deadline), or refused: other
hosts, private addresses (unless the crawl allows them), images, fonts, non-GET requests, a second top-level
navigation (a page navigating away), past the page's request or byte budget. A dead proxy catches anything
that interception does not see (WebSockets, service workers). Popups are not created at all.

Memory (Chromium 156, a Docsify site on loopback, proportional set size over the browser's processes):
~270 MB once started and idle (5 processes), ~360 MB while it renders a page; one browser per worker process
that meets a page needing it. A render took 1.4 s median (0.5 s of it the network-idle wait), 4 s with the
browser's launch, on a busy 2-core machine.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import concurrent.futures
import contextlib
import ctypes
import itertools
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import aiohttp
import lxml.html

from ragcord.errors import Blocked, ExtractionFailed, FetchFailed, RagcordError, TooLarge
from ragcord.jobs import JobRecord, RenderMode
from ragcord.settings import Settings
from ragcord.urls import Scope, normalize_url
from workers import crawler
from workers.crawler import DeadlineExceeded, ExtractedPage, FetchedPage, Fetcher, extract
from workers.extraction.webpage import is_documentation

__all__ = [
    "Browser",
    "RenderUnavailable",
    "Rendered",
    "Rendering",
    "find_chromium",
    "hash_route",
    "hash_route_links",
    "needs_render",
]

log = logging.getLogger(__name__)

# Executables tried, in order, when RAGCORD_CHROMIUM_PATH is not set (Debian: `chromium`).
_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_LAUNCH_SECONDS = 30.0  # a browser that has not said where its DevTools listen by then is given up on
_RETRY_LAUNCH_SECONDS = 60.0  # after a failed launch, pages are not rendered for this long
_DISPOSE_SECONDS = 5.0  # a page's browser context not closed by then (a renderer spinning): restart
_IDLE_SECONDS = 0.5  # no request in flight for this long after the load event: the page has rendered
_QUIET_SECONDS = 2.0  # ... or this long, when the page still shows (next to) no text
_POLL_SECONDS = 0.05
# Requests never fetched for a page: they carry no text, or never end (EventSource), or are noise.
_REFUSED_TYPES = frozenset(
    (
        "Image",
        "Media",
        "Font",
        "TextTrack",
        "Prefetch",
        "Ping",
        "CSPViolationReport",
        "Manifest",
        "EventSource",
    )
)
_LIBC_PR_SET_PDEATHSIG = 1
_DEVTOOLS_URL = re.compile(rb"DevTools listening on (ws://\S+)")


class RenderUnavailable(FetchFailed):
    """No browser can render pages here (Chromium is missing or does not start); the message says why."""


class _Broken(Exception):
    """The browser stopped answering; it is killed and started again for the next page."""


def find_chromium(configured: str = "") -> str | None:
    """The Chromium executable to run: the configured path, else the first of the usual names on PATH."""
    if configured:
        return configured if os.access(configured, os.X_OK) else shutil.which(configured)
    for name in _CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return None


# -- when a page is rendered -------------------------------------------------------------------------------


# Where client-side apps mount their rendering (React, Vue, Next, Nuxt, Docusaurus, Svelte, Docsify, ...).
_MOUNT_IDS = frozenset(
    ("app", "root", "__next", "__nuxt", "__docusaurus", "svelte", "main", "docs", "content")
)
_MOUNT_PLACEHOLDER_CHARS = 40  # "Loading…" and the like
_VISIBLE_TEXT = (
    ".//text()[not(ancestor::script or ancestor::style or ancestor::noscript or ancestor::template)]"
)


def _visible_text(el: lxml.html.HtmlElement) -> int:
    """Characters of text a reader without JavaScript sees in `el` (scripts, styles, noscript aside)."""
    texts = el.xpath(_VISIBLE_TEXT)
    return sum(len(str(text).strip()) for text in texts)


def _shell(body: bytes, min_text_chars: int) -> bool:
    """The static HTML is an empty shell that scripts fill: it loads or runs a script, and either its whole
    body shows less than `min_text_chars` of text or it has an empty mount point (`<div id="app">`)."""
    try:
        tree = lxml.html.document_fromstring(body)
    except (ValueError, lxml.etree.ParserError):
        return False
    if is_documentation(tree, body):
        # A static generator's page is what it is: Doxygen's short index pages (functions_k.html) load
        # scripts and show little text, and rendering them was slower and found nothing more.
        return False
    scripted = False
    for script in tree.iter("script"):
        kind = (script.get("type") or "").strip().lower()
        if kind and kind not in ("module", "text/javascript", "application/javascript"):
            continue  # JSON data blocks, templates
        if script.get("src") or (script.text or "").strip():
            scripted = True
            break
    if not scripted:
        return False
    page = tree.find("body")
    if page is None or _visible_text(page) < min_text_chars:
        return True
    return any(
        (el.get("id") or "") in _MOUNT_IDS and _visible_text(el) <= _MOUNT_PLACEHOLDER_CHARS
        for el in page.iter("div", "main", "section", "app-root")
    )


def needs_render(body: bytes, extracted: ExtractedPage | None, min_text_chars: int) -> bool:
    """RENDER_AUTO's rule: the main content has (next to) no text, and the page is a shell scripts fill."""
    text = extracted.text if extracted is not None else ""
    return len(text.strip()) < min_text_chars and _shell(body, min_text_chars)


# -- hash routes (`#/page`): pages of client-side routers such as Docsify ---------------------------------


def hash_route(url: str) -> str | None:
    """`url` normalised with its hash route kept (`https://h/docs/#/guide`), or None when it has none.

    Docsify's section links (`#/guide?id=install`) are the page itself, so `id` is dropped; `#/` is the
    home route, the page without a fragment.
    """
    base, fragment = urldefrag(url.strip())
    if not fragment.startswith("/"):
        return None
    path, _, query = fragment.partition("?")
    kept = "&".join(pair for pair in query.split("&") if pair and pair.split("=", 1)[0] != "id")
    page = normalize_url(base)
    if path == "/" and not kept:
        return page
    return f"{page}#{path}{'?' + kept if kept else ''}"


def hash_route_links(html: bytes, url: str) -> list[str]:
    """The hash-route links (`href="#/page"`) of a rendered page, absolute, in document order, unique."""
    try:
        tree = lxml.html.document_fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return []
    base_el = tree.find(".//base[@href]")
    base = urljoin(url, base_el.get("href").strip()) if base_el is not None else url
    found: dict[str, None] = {}
    for anchor in tree.iter("a", "area"):
        href = (anchor.get("href") or "").strip()
        if "#/" not in href:
            continue
        with contextlib.suppress(ValueError):
            target = urljoin(base, href)
            if urlsplit(target).scheme in ("http", "https") and (route := hash_route(target)):
                found[route] = None
    return list(found)


# -- the DevTools connection -------------------------------------------------------------------------------


class _Devtools:
    """One DevTools websocket: commands matched to replies by id, events handed to their session's handler."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, http: aiohttp.ClientSession) -> None:
        self.ws = ws
        self.http = http
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.handlers: dict[str, Callable[[str, dict[str, Any]], None]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @property
    def closed(self) -> bool:
        return self.ws.closed or self._reader.done()

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None, timeout: float
    ) -> dict[str, Any]:
        if self.closed:
            raise _Broken("the browser's DevTools connection is closed")
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        try:
            await self.ws.send_str(json.dumps(message))
            reply = await asyncio.wait_for(future, max(0.001, timeout))
        finally:
            self._pending.pop(message_id, None)
        if "error" in reply:
            raise FetchFailed(
                f"the browser refused {method}: {reply['error'].get('message', reply['error'])}"
            )
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                if "id" in data:
                    future = self._pending.get(data["id"])
                    if future is not None and not future.done():
                        future.set_result(data)
                elif (handler := self.handlers.get(data.get("sessionId", ""))) is not None:
                    handler(data.get("method", ""), data.get("params", {}))
        except Exception:  # noqa: BLE001 - any failure reading ends the connection; pages see it as _Broken
            log.exception("reading the browser's DevTools connection failed")
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(_Broken("the browser closed its DevTools connection"))

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close()
        with contextlib.suppress(Exception):
            await self.http.close()


def _die_with_parent() -> None:
    """In the browser's process before exec: killed when the worker thread that started it is gone."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_LIBC_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class _Process:
    proc: asyncio.subprocess.Process
    devtools: _Devtools
    profile: str
    stderr_task: asyncio.Task[None]

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None and not self.devtools.closed

    async def kill(self) -> None:
        await self.devtools.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the browser and its renderers, one process group
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 5.0)
        self.stderr_task.cancel()
        shutil.rmtree(self.profile, ignore_errors=True)


# -- one page in the browser -------------------------------------------------------------------------------


@dataclass
class _Page:
    """The state of one page's render: its requests, what it was refused, when it went quiet."""

    page: FetchedPage
    origin: tuple[str, str]
    hard_deadline: float
    max_requests: int
    max_bytes: int
    in_flight: int = 0
    requests: int = 0
    bytes: int = 0
    loaded: bool = False
    last_activity: float = field(default_factory=time.monotonic)
    document_served: bool = False
    refused: list[str] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Browser:
    """A headless Chromium for one worker process; `render` is called from the worker's threads.

    `fetcher` answers the page's requests (the crawler's own, with its guard and caps).
    """

    def __init__(self, settings: Settings, fetcher: Fetcher, *, executable: str | None = None) -> None:
        self.settings = settings
        self.fetcher = fetcher
        self.executable = executable if executable is not None else find_chromium(settings.chromium_path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._process: _Process | None = None
        self._launch_lock: asyncio.Lock | None = None
        self._launch_failed: tuple[float, str] | None = None
        self._lock = threading.Lock()
        self._fetches = concurrent.futures.ThreadPoolExecutor(
            max_workers=6, thread_name_prefix="ragcord-render"
        )
        self._enough_text = max(1, settings.render_min_text_chars)
        self.launches = 0  # browsers started by this object (tests and logs read it)
        self._closed = False

    # -- the sync face, for the worker's threads --------------------------------------------------------

    def unavailable(self) -> str | None:
        """Why pages cannot be rendered here, or None when they can (as far as is known before a launch)."""
        if self.executable is None:
            where = (
                f"RAGCORD_CHROMIUM_PATH={self.settings.chromium_path}"
                if self.settings.chromium_path
                else ("no " + ", ".join(_CHROMIUM_NAMES) + " on PATH")
            )
            return (
                f"rendering JavaScript pages is unavailable: Chromium is not installed ({where}); install "
                "Debian's `chromium` package on the worker hosts, or set RAGCORD_CHROMIUM_PATH"
            )
        if self._launch_failed is not None and time.monotonic() < self._launch_failed[0]:
            return self._launch_failed[1]
        return None

    def render(self, page: FetchedPage) -> bytes:
        """The page's DOM after its scripts ran, serialised (UTF-8); `page` is its static fetch.

        Raises RenderUnavailable, DeadlineExceeded, TooLarge or FetchFailed.
        """
        if (why := self.unavailable()) is not None:
            raise RenderUnavailable(why)
        deadline = self.settings.render_deadline_seconds
        future = asyncio.run_coroutine_threadsafe(self._render(page), self._running_loop())
        try:
            # The coroutine keeps its own deadline; this bound only guards against a stuck loop.
            return future.result(timeout=deadline + _DISPOSE_SECONDS + _LAUNCH_SECONDS + 5)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise DeadlineExceeded(f"rendering took longer than {deadline:g}s") from None

    def close(self) -> None:
        """Close the browser and its thread (worker shutdown); safe to call twice."""
        with self._lock:
            loop, self._loop = self._loop, None
            self._closed = True
        if loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._kill(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._fetches.shutdown(wait=False, cancel_futures=True)

    @property
    def running(self) -> bool:
        """A browser process is up (tests: a static crawl must never start one)."""
        return self._process is not None and self._process.alive

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RenderUnavailable("the worker is shutting down: its browser is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                # The browser is started from this thread, and dies with it (PR_SET_PDEATHSIG).
                self._thread = threading.Thread(target=loop.run_forever, name="ragcord-browser", daemon=True)
                self._thread.start()
                self._loop = loop
                atexit.register(self.close)
            return self._loop

    # -- the browser process ------------------------------------------------------------------------------

    async def _browser(self) -> _Devtools:
        if self._launch_lock is None:
            self._launch_lock = asyncio.Lock()
        async with self._launch_lock:
            if self._process is not None and self._process.alive:
                return self._process.devtools
            if self._process is not None:
                log.warning(
                    "the headless browser died (exit %s): starting another", self._process.proc.returncode
                )
                await self._kill()
            try:
                self._process = await self._launch()
            except RenderUnavailable as exc:
                self._launch_failed = (time.monotonic() + _RETRY_LAUNCH_SECONDS, str(exc))
                raise
            self._launch_failed = None
            return self._process.devtools

    async def _launch(self) -> _Process:
        assert self.executable is not None
        profile = tempfile.mkdtemp(prefix="ragcord-chromium-")
        args = [
            "--headless=new",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-dev-shm-usage",  # a small /dev/shm (containers) would crash renderers
            "--disable-extensions",
            "--disable-component-update",
            "--disable-background-networking",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-features=Translate,MediaRouter,OptimizationHints,DialMediaRouteProvider,SpareRendererForSitePerProcess",
            "--in-process-gpu",  # one process fewer (~40 MB): nothing is drawn
            "--mute-audio",
            "--hide-scrollbars",
            "--block-new-web-contents",  # window.open and popups create nothing
            # Interception answers every request; anything it does not see goes to a proxy that is not there.
            "--proxy-server=http://127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",
            "--js-flags=--max-old-space-size=512",
            "about:blank",
        ]
        if os.geteuid() == 0 or self.settings.chromium_no_sandbox:
            args.insert(0, "--no-sandbox")  # Chromium's sandbox refuses to run as root
        try:
            proc = await asyncio.create_subprocess_exec(
                self.executable,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only, no locks taken
            )
        except OSError as exc:
            shutil.rmtree(profile, ignore_errors=True)
            raise RenderUnavailable(
                f"rendering JavaScript pages is unavailable: {self.executable} does not start ({exc})"
            ) from None
        assert proc.stderr is not None
        said: list[bytes] = []
        try:
            url = await asyncio.wait_for(self._devtools_url(proc.stderr, said), _LAUNCH_SECONDS)
            http = aiohttp.ClientSession()
            ws = await http.ws_connect(
                url, max_msg_size=8 * self.settings.max_page_bytes + 1_000_000, autoping=True
            )
        except (TimeoutError, OSError, aiohttp.ClientError, RenderUnavailable) as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            shutil.rmtree(profile, ignore_errors=True)
            tail = b"".join(said)[-400:].decode("utf-8", "replace").strip()
            raise RenderUnavailable(
                f"rendering JavaScript pages is unavailable: {self.executable} did not start "
                f"({type(exc).__name__}: {exc}){': ' + tail if tail else ''}"
            ) from None
        devtools = _Devtools(ws, http)
        stderr_task = asyncio.get_running_loop().create_task(_drain(proc.stderr))
        with contextlib.suppress(FetchFailed, _Broken, TimeoutError):
            await devtools.send("Browser.setDownloadBehavior", {"behavior": "deny"}, timeout=10)
            # The tab a browser opens with holds a renderer for nothing: pages get contexts of their own.
            for target in (await devtools.send("Target.getTargets", timeout=10)).get("targetInfos", []):
                if target.get("type") == "page":
                    await devtools.send("Target.closeTarget", {"targetId": target["targetId"]}, timeout=10)
        self.launches += 1
        log.info("started a headless browser (%s, pid %d) for JavaScript pages", self.executable, proc.pid)
        return _Process(proc, devtools, profile, stderr_task)

    @staticmethod
    async def _devtools_url(stderr: asyncio.StreamReader, said: list[bytes]) -> str:
        while line := await stderr.readline():
            said.append(line)
            if match := _DEVTOOLS_URL.search(line):
                return match.group(1).decode()
        raise RenderUnavailable("the browser exited before it opened its DevTools")

    async def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            await process.kill()

    # -- one page -----------------------------------------------------------------------------------------

    async def _render(self, page: FetchedPage) -> bytes:
        settings = self.settings
        devtools, context = await self._context()
        started = time.monotonic()  # a launch has its own bound: the page's deadline starts after it
        hard = started + settings.render_deadline_seconds
        settle = started + settings.render_deadline_seconds * 0.75  # then the DOM is taken as it is
        parts = urlsplit(page.url)
        state = _Page(
            page,
            (parts.scheme, parts.netloc),
            hard,
            settings.render_max_requests,
            settings.render_max_bytes,
        )
        session = ""
        try:
            target = await devtools.send(
                "Target.createTarget", {"url": "about:blank", "browserContextId": context}, timeout=10
            )
            session = (
                await devtools.send(
                    "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, timeout=10
                )
            )["sessionId"]
            devtools.handlers[session] = lambda method, params: self._on_event(
                devtools, session, state, method, params
            )
            for method, params in (
                ("Fetch.enable", {"patterns": [{"urlPattern": "*", "requestStage": "Request"}]}),
                ("Page.enable", {}),
                ("Page.setBypassCSP", {"enabled": False}),
            ):
                await devtools.send(method, params, session=session, timeout=10)
            navigated = await devtools.send(
                "Page.navigate",
                {"url": page.url},
                session=session,
                timeout=max(0.001, settle - time.monotonic()),
            )
            if navigated.get("errorText"):
                raise FetchFailed(f"the browser could not load the page: {navigated['errorText']}")
            await self._settle(devtools, session, state, settle)
            html = await self._dom(devtools, session, hard)
        except TimeoutError:
            raise DeadlineExceeded(
                f"rendering took longer than the render deadline of {settings.render_deadline_seconds:g}s "
                "(the page kept its browser busy)"
            ) from None
        except _Broken as exc:
            await self._kill()
            raise FetchFailed(f"the browser failed while rendering: {exc}") from None
        finally:
            devtools.handlers.pop(session, None)
            for task in state.tasks:
                task.cancel()
            await self._dispose(devtools, context)
        if state.refused:
            log.debug(
                "%s: refused %d of the page's requests (%s)",
                page.url,
                len(state.refused),
                "; ".join(state.refused[:5]),
            )
        log.debug(
            "rendered %s in %.2fs: %d requests, %d bytes",
            page.url,
            time.monotonic() - started,
            state.requests,
            state.bytes,
        )
        return html

    async def _context(self) -> tuple[_Devtools, str]:
        """A fresh browser context for a page; a browser found dead on the way is started again, once."""
        for attempt in (1, 2):
            devtools = await self._browser()
            try:
                reply = await devtools.send("Target.createBrowserContext", timeout=10)
                return devtools, reply["browserContextId"]
            except (_Broken, TimeoutError) as exc:
                await self._kill()
                if attempt == 2:
                    raise FetchFailed(f"the browser does not answer: {exc!r}") from None
        raise AssertionError("unreachable")

    async def _settle(self, devtools: _Devtools, session: str, state: _Page, settle: float) -> None:
        """Until the load event, then no request in flight for `_IDLE_SECONDS` and text on the page: plenty,
        or more than a placeholder and unchanged for `_IDLE_SECONDS` (or `_QUIET_SECONDS` without a request
        at all: a slow script may start its requests late); at most until `settle`."""
        seen, since = -1, time.monotonic()
        while time.monotonic() < settle:
            now = time.monotonic()
            quiet = now - state.last_activity
            if state.loaded and state.in_flight == 0 and quiet >= _IDLE_SECONDS:
                if quiet >= _QUIET_SECONDS:
                    return
                chars = await self._text_chars(devtools, session)
                if chars >= self._enough_text:
                    return
                if chars != seen:
                    seen, since = chars, now
                elif chars > _MOUNT_PLACEHOLDER_CHARS and now - since >= _IDLE_SECONDS:
                    return
            await asyncio.sleep(_POLL_SECONDS)

    async def _text_chars(self, devtools: _Devtools, session: str) -> int:
        """How much text the page shows now (0 when its scripts keep it too busy to say)."""
        try:
            reply = await devtools.send(
                "Runtime.evaluate",
                {"expression": "document.body ? document.body.innerText.length : 0", "returnByValue": True},
                session=session,
                timeout=1.0,
            )
        except (TimeoutError, FetchFailed):
            return 0
        value = reply.get("result", {}).get("value")
        return value if isinstance(value, int) else 0

    async def _dom(self, devtools: _Devtools, session: str, hard: float) -> bytes:
        cap = self.settings.max_page_bytes

        async def evaluate(expression: str) -> Any:
            reply = await devtools.send(
                "Runtime.evaluate",
                {"expression": expression, "returnByValue": True},
                session=session,
                timeout=hard - time.monotonic(),
            )
            return reply.get("result", {}).get("value")

        length = await evaluate("document.documentElement ? document.documentElement.outerHTML.length : 0")
        if not isinstance(length, int) or length == 0:
            raise FetchFailed("the rendered page has no document")
        if length > cap:
            raise TooLarge(f"too large once rendered ({length} characters, limit {cap} bytes)")
        html = await evaluate("'<!DOCTYPE html>' + document.documentElement.outerHTML")
        data = (html if isinstance(html, str) else "").encode("utf-8", "replace")
        if len(data) > cap:
            raise TooLarge(f"too large once rendered ({len(data)} bytes, limit {cap})")
        return data

    async def _dispose(self, devtools: _Devtools, context: str) -> None:
        """Close the page's context (its tabs and renderers); a browser that cannot is started afresh."""
        try:
            await devtools.send(
                "Target.disposeBrowserContext", {"browserContextId": context}, timeout=_DISPOSE_SECONDS
            )
        except (TimeoutError, _Broken, FetchFailed) as exc:
            log.warning("the headless browser did not close a page's context (%r): restarting it", exc)
            await self._kill()

    # -- the page's requests ------------------------------------------------------------------------------

    def _on_event(
        self, devtools: _Devtools, session: str, state: _Page, method: str, params: dict[str, Any]
    ) -> None:
        if method == "Fetch.requestPaused":
            state.in_flight += 1
            state.last_activity = time.monotonic()
            task = asyncio.get_running_loop().create_task(self._answer(devtools, session, state, params))
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)
        elif method == "Page.loadEventFired":
            state.loaded = True
            state.last_activity = time.monotonic()
        elif method == "Page.javascriptDialogOpening":  # alert() would stop the page's scripts for good
            task = asyncio.get_running_loop().create_task(
                _quietly(
                    devtools.send(
                        "Page.handleJavaScriptDialog", {"accept": False}, session=session, timeout=5
                    )
                )
            )
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)

    async def _answer(self, devtools: _Devtools, session: str, state: _Page, params: dict[str, Any]) -> None:
        request_id = params["requestId"]
        try:
            why, fetched = self._refusal(state, params), None
            if why is None:
                fetched, why = await self._fetch(state, params)
            if fetched is not None:
                await devtools.send(
                    "Fetch.fulfillRequest",
                    {
                        "requestId": request_id,
                        "responseCode": fetched.status,
                        "responseHeaders": _headers(fetched),
                        "body": base64.b64encode(fetched.body).decode(),
                    },
                    session=session,
                    timeout=max(1.0, state.hard_deadline - time.monotonic()),
                )
            elif params.get("resourceType") == "Document":
                state.refused.append(f"{params['request']['url'][:120]}: {why}")
                # A navigation answered 204 is abandoned: the page stays (a failed one shows an error page).
                await devtools.send(
                    "Fetch.fulfillRequest",
                    {"requestId": request_id, "responseCode": 204, "responseHeaders": []},
                    session=session,
                    timeout=5,
                )
            else:
                if not why.startswith("favicons"):
                    state.refused.append(f"{params['request']['url'][:120]}: {why}")
                await devtools.send(
                    "Fetch.failRequest",
                    {"requestId": request_id, "errorReason": "BlockedByClient"},
                    session=session,
                    timeout=5,
                )
        except (TimeoutError, _Broken, FetchFailed) as exc:
            log.debug("request %s of %s not answered: %r", request_id, state.page.url, exc)
        finally:
            state.in_flight -= 1
            state.last_activity = time.monotonic()

    def _refusal(self, state: _Page, params: dict[str, Any]) -> str | None:
        """Why a request is refused without being fetched, or None to fetch it."""
        request = params["request"]
        url = urldefrag(request["url"]).url
        kind = params.get("resourceType", "Other")
        if kind == "Document":
            if not state.document_served:
                return None  # the navigation to the page itself (the context's first), from its static fetch
            return "the page tried to load another document (navigating away, or a frame)"
        if request.get("method", "GET") != "GET":
            return f"{request.get('method')} requests are not made"
        if kind in _REFUSED_TYPES:
            return f"{kind.lower()} requests are not made"
        parts = urlsplit(url)
        if parts.path.endswith("/favicon.ico"):
            return "favicons are not fetched"
        if parts.scheme not in ("http", "https"):
            return f"{parts.scheme} URLs are not fetched"
        if (parts.scheme, parts.netloc) != state.origin:
            return "another host: a page's requests stay on the crawl's site"
        if state.requests >= state.max_requests:
            return f"over the page's {state.max_requests} requests"
        if state.bytes >= state.max_bytes:
            return f"over the page's {state.max_bytes} bytes of requests"
        return None

    async def _fetch(self, state: _Page, params: dict[str, Any]) -> tuple[FetchedPage | None, str]:
        url = urldefrag(params["request"]["url"]).url
        if params.get("resourceType") == "Document":
            state.document_served = True
            return state.page, ""
        state.requests += 1
        scheme, netloc = state.origin
        site = Scope(urlunsplit((scheme, netloc, "/", "", "")))  # redirects stay on the site, any path
        room = max(1, min(self.settings.max_page_bytes, state.max_bytes - state.bytes))

        def fetch() -> FetchedPage:
            # Bounded by the page's render deadline, not a fetch deadline of its own.
            token = crawler._DEADLINE.set(state.hard_deadline)  # noqa: SLF001 - the crawler's deadline seam
            try:
                return self.fetcher.fetch(url, site, html_only=False, max_bytes=room)
            finally:
                crawler._DEADLINE.reset(token)  # noqa: SLF001

        try:
            fetched = await asyncio.get_running_loop().run_in_executor(self._fetches, fetch)
        except RagcordError as exc:
            return None, str(exc)
        state.bytes += len(fetched.body)
        return fetched, ""


def _headers(page: FetchedPage) -> list[dict[str, str]]:
    if not page.content_type:
        return []
    value = f"{page.content_type}; charset={page.charset}" if page.charset else page.content_type
    return [{"name": "Content-Type", "value": value}]


async def _drain(stream: asyncio.StreamReader) -> None:
    """Read the browser's stderr to its end (a full pipe would stop the browser); kept at debug level."""
    with contextlib.suppress(Exception):
        while line := await stream.readline():
            log.debug("chromium: %s", line.decode("utf-8", "replace").rstrip())


async def _quietly(call: Awaitable[Any]) -> None:
    with contextlib.suppress(Exception):
        await call


# -- the crawl's step ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """What the crawl reads of a page: its fetch (rendered or not), extraction, and a note for its event."""

    page: FetchedPage
    extracted: ExtractedPage
    note: str = ""


class Rendering:
    """The crawl's rendering step: decides, per the job's `render` mode, whether a page goes to the browser.

    `first_warning(job_id)` says whether this is the job's first page told that rendering is unavailable.
    """

    def __init__(self, settings: Settings, browser: Browser, first_warning: Callable[[str], bool]) -> None:
        self.settings = settings
        self.browser = browser
        self.first_warning = first_warning
        self._logged_unavailable = False

    def close(self) -> None:
        self.browser.close()

    def read(self, job: JobRecord, page: FetchedPage, extracted: ExtractedPage) -> Rendered:
        """The page to index: rendered when the job's mode says so and the browser can.

        RENDER_ALWAYS raises what rendering raised (RenderUnavailable, DeadlineExceeded, TooLarge, ...);
        RENDER_AUTO keeps the static page and says why in the note.
        """
        mode = job.render
        static = Rendered(page, extracted)
        if mode is RenderMode.NEVER:
            return static
        if mode is RenderMode.AUTO and not needs_render(
            page.body, extracted, self.settings.render_min_text_chars
        ):
            return static
        try:
            html = self.browser.render(page)
        except RenderUnavailable as exc:
            if mode is RenderMode.ALWAYS:
                raise
            return replace(static, note=self._unavailable(job, str(exc)))
        except (FetchFailed, TooLarge, Blocked) as exc:
            if mode is RenderMode.ALWAYS:
                raise
            log.info("%s: rendering failed, reading the static page: %s", page.url, exc)
            return replace(static, note=f" (rendering failed: {exc})")
        rendered = FetchedPage(page.requested_url, page.url, page.status, "text/html", html, "utf-8")
        try:
            read = extract(rendered)
        except ExtractionFailed as exc:
            if mode is RenderMode.ALWAYS:
                raise
            return replace(static, note=f" (rendering failed: {exc})")
        links = list(dict.fromkeys([*read.links, *hash_route_links(html, page.url)]))
        return Rendered(rendered, replace(read, links=links), " (rendered)")

    def _unavailable(self, job: JobRecord, why: str) -> str:
        if not self._logged_unavailable:
            self._logged_unavailable = True
            log.warning("%s; pages that need it are read as served", why)
        if self.first_warning(job.id):
            return f" ({why}; this crawl goes on with pages as served)"
        return " (not rendered: rendering is unavailable)"
