"""A fake OpenAI-compatible HTTP server on loopback, for tests that drive the real `openai` client.

    with FakeOpenAI(reply=lambda body: "Hello [1].") as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0)
        client.chat.completions.create(model="gpt-x", messages=[...])
        assert fake.chat_requests()[0]["model"] == "gpt-x"

It serves (aiohttp, own event loop on a background thread):

- ``POST /v1/chat/completions``: a ``chat.completion`` object, or with ``"stream": true`` an SSE stream of
  ``chat.completion.chunk`` events (role chunk, one content delta per word, a ``finish_reason: "stop"``
  chunk, a usage chunk when ``stream_options.include_usage`` is set, then ``data: [DONE]``).
- ``POST /v1/embeddings``: deterministic, L2-normalised vectors (see :func:`fake_embedding`), as float
  lists or as base64 little-endian float32, following ``encoding_format``. Note that openai>=3.51 asks for
  ``"base64"`` whenever the caller does not pass ``encoding_format`` and decodes it transparently.
- ``GET /v1/models`` and ``GET /v1/models/{id}``.
- Anything else: 404 with an OpenAI-style error body.

Every request is recorded in :attr:`FakeOpenAI.requests`, including scripted failures and stalls.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["DEFAULT_REPLY", "FAKE_MODEL", "FakeOpenAI", "RecordedRequest", "fake_embedding"]

DEFAULT_REPLY = "Fake answer citing [1]."
FAKE_MODEL = "fake-model"

# aiohttp logs handler errors on "aiohttp.server"; without any handler Python's last-resort handler would
# print them to stderr. A NullHandler keeps propagation (pytest's log capture still sees them).
_server_log = logging.getLogger("aiohttp.server")
if not _server_log.handlers:
    _server_log.addHandler(logging.NullHandler())

_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "unknown_url"),
    408: ("timeout", None),
    409: ("invalid_request_error", "conflict"),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", None),
}


@dataclass
class RecordedRequest:
    method: str
    path: str  # e.g. "/v1/chat/completions" (no query string)
    headers: dict[str, str]  # keys lower-cased
    json: dict | None  # None when the body is empty or not a JSON object


@dataclass
class _Failure:
    status: int
    retry_after: float | None
    message: str


def fake_embedding(text: str, dim: int = 8) -> list[float]:
    """The vector the fake returns for `text`: derived from sha256, L2-normalised, rounded to float32
    (so the float and base64 encodings decode to exactly the same numbers)."""
    if dim <= 0:
        raise ValueError("dim must be positive")
    raw: list[float] = []
    counter = 0
    while len(raw) < dim:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        for (value,) in struct.iter_unpack("<I", digest):
            raw.append(value / 0xFFFFFFFF * 2.0 - 1.0)
        counter += 1
    raw = raw[:dim]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    normalised = [x / norm for x in raw]
    return list(struct.unpack(f"<{dim}f", struct.pack(f"<{dim}f", *normalised)))


def _count_tokens(value: Any) -> int:
    """A crude, deterministic token count (whitespace-separated words)."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_count_tokens(v) for v in value)
    if isinstance(value, dict):
        return _count_tokens(value.get("content")) + _count_tokens(value.get("text"))
    return len(str(value).split())


def _split_words(text: str) -> list[str]:
    """Split into word pieces that concatenate back to `text` exactly."""
    pieces = re.findall(r"\s*\S+\s*", text)
    if not pieces:
        return [text] if text else []
    return pieces


def _error_body(status: int, message: str) -> dict:
    err_type, code = _ERROR_KINDS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return {"error": {"message": message, "type": err_type, "param": None, "code": code}}


class FakeOpenAI:
    """Fake OpenAI API on 127.0.0.1; use as a context manager (or call start()/stop())."""

    def __init__(self, *, reply: Callable[[dict], str] | None = None, embedding_dim: int = 8) -> None:
        self._reply = reply or (lambda _body: DEFAULT_REPLY)
        self.embedding_dim = embedding_dim
        self.requests: list[RecordedRequest] = []
        self.base_url = ""
        self.port = 0
        self._lock = threading.Lock()
        self._failures: deque[_Failure] = deque()
        self._stalls: deque[float] = deque()
        self._malformed = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None

    # ----- scripting -----------------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        message: str = "Scripted failure from FakeOpenAI",
    ) -> None:
        """The next `times` requests (any endpoint) get `status` with an OpenAI-style error body. With
        `retry_after`, also send `retry-after` (seconds) and `retry-after-ms`. Note the openai client only
        honours a delay in (0, 120] s; 0 falls back to its own backoff (~0.4-0.5 s on the first retry)."""
        with self._lock:
            for _ in range(times):
                self._failures.append(_Failure(status, retry_after, message))

    def malformed_stream_next(self) -> None:
        """The next streaming chat completion sends one valid chunk, then `data: {not json` and closes."""
        with self._lock:
            self._malformed += 1

    def stall_next(self, seconds: float) -> None:
        """The next request (any endpoint) sleeps `seconds` before being handled. Stopping the fake cuts
        the stall short."""
        with self._lock:
            self._stalls.append(seconds)

    # ----- inspection ----------------------------------------------------------------------------------

    def chat_requests(self) -> list[dict]:
        """JSON bodies of every POST /chat/completions request, in arrival order (failed ones included)."""
        with self._lock:
            return [
                r.json
                for r in self.requests
                if r.method == "POST" and r.path.endswith("/chat/completions") and r.json is not None
            ]

    # ----- lifecycle -----------------------------------------------------------------------------------

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("FakeOpenAI already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()
        startup_error: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start_server(sock))
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                startup_error.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"FakeOpenAI:{self.port}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if startup_error:
            self._thread.join(1)
            self._thread = None
            sock.close()
            raise RuntimeError("FakeOpenAI failed to start") from startup_error[0]

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._stop_server(), loop).result(timeout=5)
        except Exception:  # noqa: BLE001 - best effort, the loop is stopped below regardless
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        self._thread = None
        self._loop = None

    async def _start_server(self, sock: socket.socket) -> None:
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.25)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def _stop_server(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # ----- request handling ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: dict | None = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            body = parsed if isinstance(parsed, dict) else None
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            k = key.lower()
            headers[k] = f"{headers[k]}, {value}" if k in headers else value
        with self._lock:
            self.requests.append(RecordedRequest(request.method, request.path, headers, body))
            stall = self._stalls.popleft() if self._stalls else None
            failure = self._failures.popleft() if self._failures else None

        if stall is not None:
            assert self._closing is not None
            try:
                await asyncio.wait_for(self._closing.wait(), timeout=stall)
            except TimeoutError:
                pass
            if self._closing.is_set():
                return self._error(503, "FakeOpenAI is shutting down")

        if failure is not None:
            resp = self._error(failure.status, failure.message)
            if failure.retry_after is not None:
                ra = failure.retry_after
                resp.headers["retry-after"] = str(int(ra)) if float(ra).is_integer() else str(ra)
                resp.headers["retry-after-ms"] = str(int(round(ra * 1000)))
            return resp

        path, method = request.path, request.method
        try:
            if path == "/v1/chat/completions" and method == "POST":
                return await self._chat(request, body)
            if path == "/v1/embeddings" and method == "POST":
                return self._embeddings(body)
            if path == "/v1/models" and method == "GET":
                return self._json({"object": "list", "data": [self._model_obj(FAKE_MODEL)]})
            if path.startswith("/v1/models/") and method == "GET":
                model_id = path[len("/v1/models/") :]
                if model_id == FAKE_MODEL:
                    return self._json(self._model_obj(model_id))
                return self._error(404, f"The model '{model_id}' does not exist", code="model_not_found")
        except Exception as exc:  # noqa: BLE001 - e.g. a failing `reply` callable; answered like the API
            return self._error(500, f"FakeOpenAI handler error: {exc!r}")
        return self._error(404, f"Invalid URL ({method} {path})")

    @staticmethod
    def _headers() -> dict[str, str]:
        return {"x-request-id": f"req_{uuid.uuid4().hex}", "openai-processing-ms": "1"}

    def _json(self, payload: dict, status: int = 200) -> web.Response:
        return web.json_response(payload, status=status, headers=self._headers())

    def _error(self, status: int, message: str, *, code: str | None = None) -> web.Response:
        payload = _error_body(status, message)
        if code is not None:
            payload["error"]["code"] = code
        return self._json(payload, status=status)

    @staticmethod
    def _model_obj(model_id: str) -> dict:
        return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "ragcord-tests"}

    async def _chat(self, request: web.Request, body: dict | None) -> web.StreamResponse:
        if body is None:
            return self._error(400, "We could not parse the JSON body of your request.")
        if not body.get("model"):
            return self._error(400, "you must provide a model parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(400, "[] is too short - 'messages'")

        text = self._reply(body)
        if not isinstance(text, str):
            raise TypeError(f"reply() must return str, got {type(text).__name__}")
        model = body["model"]
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        prompt_tokens = _count_tokens(messages)
        completion_tokens = _count_tokens(text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

        if not body.get("stream"):
            return self._json(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_fake",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        with self._lock:
            malformed = self._malformed > 0
            if malformed:
                self._malformed -= 1

        def chunk(delta: dict, finish_reason: str | None = None) -> dict:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                data["usage"] = None
            return data

        pieces = _split_words(text)
        resp = web.StreamResponse(status=200, headers=self._headers())
        resp.content_type = "text/event-stream"
        resp.charset = "utf-8"
        resp.headers["cache-control"] = "no-cache"
        try:
            await resp.prepare(request)

            async def send(payload: dict | str) -> None:
                data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
                await resp.write(f"data: {data}\n\n".encode())

            if malformed:
                # One valid chunk, then an unparseable event. The trailing blank line matters: the client's
                # SSE decoder only dispatches an event on a blank line, so without it the bad line would be
                # silently dropped at EOF instead of raising.
                await send(chunk({"role": "assistant", "content": pieces[0] if pieces else ""}))
                await resp.write(b"data: {not json\n\n")
                resp.force_close()
                await resp.write_eof()
                return resp

            await send(chunk({"role": "assistant", "content": "", "refusal": None}))
            for piece in pieces:
                await send(chunk({"content": piece}))
            await send(chunk({}, finish_reason="stop"))
            if include_usage:
                await send(
                    {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "system_fingerprint": "fp_fake",
                        "choices": [],
                        "usage": usage,
                    }
                )
            await send("[DONE]")
            await resp.write_eof()
        except ConnectionError:
            pass  # the client went away mid-stream
        return resp

    def _embeddings(self, body: dict | None) -> web.Response:
        if body is None:
            return self._error(400, "We could not parse the JSON body of your request.")
        if not body.get("model"):
            return self._error(400, "you must provide a model parameter")
        raw_input = body.get("input")
        if isinstance(raw_input, str):
            inputs: list[Any] = [raw_input]
        elif isinstance(raw_input, list) and raw_input:
            # a flat list of ints is one tokenised input; otherwise each element is one input
            inputs = [raw_input] if all(isinstance(x, int) for x in raw_input) else list(raw_input)
        else:
            return self._error(400, "'$.input' is invalid. Please check the API reference.")
        if any(x == "" or x == [] for x in inputs):
            return self._error(400, "'$.input' is invalid. Please check the API reference.")

        dim = body.get("dimensions", self.embedding_dim)
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            return self._error(400, f"Invalid value for 'dimensions': {dim!r}")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return self._error(400, f"Invalid value for 'encoding_format': {encoding!r}")

        data = []
        tokens = 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else json.dumps(item)
            tokens += _count_tokens(text) if isinstance(item, str) else len(item)
            vector = fake_embedding(text, dim)
            embedding: list[float] | str
            if encoding == "base64":
                embedding = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode("ascii")
            else:
                embedding = vector
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        return self._json(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
