"""The fake OpenAI server, exercised through the real `openai` client (sync and async)."""

from __future__ import annotations

import base64
import json
import math
import struct

import httpx
import openai
import pytest

from tests.openai_fake import DEFAULT_REPLY, FakeOpenAI, fake_embedding

MESSAGES = [
    {"role": "system", "content": "Answer from the sources."},
    {"role": "user", "content": "How do I install it?"},
]


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


def sync_client(fake: FakeOpenAI, **kwargs) -> openai.OpenAI:
    kwargs.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=fake.base_url, api_key="test", **kwargs)


def async_client(fake: FakeOpenAI, **kwargs) -> openai.AsyncOpenAI:
    kwargs.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", **kwargs)


def test_base_url_is_loopback_v1(fake: FakeOpenAI) -> None:
    assert fake.base_url.startswith("http://127.0.0.1:")
    assert fake.base_url.endswith("/v1")


def test_chat_non_streaming_returns_reply_and_records_request(fake: FakeOpenAI) -> None:
    with sync_client(fake) as client:
        result = client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert result.object == "chat.completion"
    assert result.model == "gpt-test"
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == DEFAULT_REPLY
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None and result.usage.total_tokens > 0

    [body] = fake.chat_requests()
    assert body["model"] == "gpt-test"
    assert body["messages"] == MESSAGES
    [recorded] = fake.requests
    assert recorded.method == "POST"
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == "Bearer test"


def test_custom_reply_sees_the_request_body() -> None:
    def reply(body: dict) -> str:
        return f"echo: {body['messages'][-1]['content']}"

    with FakeOpenAI(reply=reply) as fake, sync_client(fake) as client:
        result = client.chat.completions.create(model="m", messages=MESSAGES)
    assert result.choices[0].message.content == "echo: How do I install it?"


def test_chat_streaming_yields_word_deltas(fake: FakeOpenAI) -> None:
    with sync_client(fake) as client:
        stream = client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)

    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) >= 3
    assert "".join(c.choices[0].delta.content for c in content_chunks) == DEFAULT_REPLY
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-test" for c in chunks)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    # include_usage: the last chunk has no choices and carries the usage
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert fake.chat_requests()[0]["stream"] is True


def test_chat_streaming_without_usage_has_no_usage_chunk(fake: FakeOpenAI) -> None:
    with sync_client(fake) as client:
        chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_async_chat_streaming(fake: FakeOpenAI) -> None:
    async with async_client(fake) as client:
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        parts = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert len(parts) >= 3
    assert "".join(parts) == DEFAULT_REPLY


async def test_async_chat_non_streaming(fake: FakeOpenAI) -> None:
    async with async_client(fake) as client:
        result = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert result.choices[0].message.content == DEFAULT_REPLY


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def test_embeddings_are_deterministic_and_normalised(fake: FakeOpenAI) -> None:
    texts = ["alpha", "beta", "alpha"]
    with sync_client(fake) as client:
        first = client.embeddings.create(model="text-embedding-test", input=texts)
        second = client.embeddings.create(model="text-embedding-test", input=texts)

    vectors = [d.embedding for d in first.data]
    assert [d.index for d in first.data] == [0, 1, 2]
    assert first.model == "text-embedding-test"
    assert all(len(v) == 8 for v in vectors)
    assert all(abs(_norm(v) - 1.0) < 1e-5 for v in vectors)
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    assert [d.embedding for d in second.data] == vectors
    assert vectors[0] == fake_embedding("alpha", 8)
    # openai>=3.51 asks for base64 when encoding_format is not given, and decodes it itself
    assert fake.requests[0].json["encoding_format"] == "base64"


def test_embeddings_float_and_base64_agree_and_honour_dimensions(fake: FakeOpenAI) -> None:
    with sync_client(fake) as client:
        as_float = client.embeddings.create(model="e", input="hello", encoding_format="float", dimensions=5)
        as_b64 = client.embeddings.create(model="e", input="hello", encoding_format="base64", dimensions=5)

    float_vec = as_float.data[0].embedding
    # explicitly requested base64 is returned as-is (a string) by the client
    raw = base64.b64decode(as_b64.data[0].embedding)
    assert list(struct.unpack("<5f", raw)) == float_vec == fake_embedding("hello", 5)


async def test_async_embeddings(fake: FakeOpenAI) -> None:
    async with async_client(fake) as client:
        result = await client.embeddings.create(model="e", input=["x", "y", "z"])
    assert [d.embedding for d in result.data] == [fake_embedding(t, 8) for t in "xyz"]


def test_embedding_dim_constructor_argument() -> None:
    with FakeOpenAI(embedding_dim=16) as fake, sync_client(fake) as client:
        result = client.embeddings.create(model="e", input="q")
    assert len(result.data[0].embedding) == 16


def test_models_list(fake: FakeOpenAI) -> None:
    with sync_client(fake) as client:
        models = client.models.list()
    assert len(models.data) == 1
    assert fake.requests[0].method == "GET" and fake.requests[0].path == "/v1/models"


def test_unknown_path_is_openai_style_404(fake: FakeOpenAI) -> None:
    response = httpx.post(f"{fake.base_url}/nope", json={"a": 1})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert fake.requests[0].json == {"a": 1}


def test_rate_limit_then_success_is_retried_transparently(fake: FakeOpenAI) -> None:
    fake.fail_next(429, retry_after=0)
    with sync_client(fake, max_retries=2) as client:
        result = client.chat.completions.create(model="m", messages=MESSAGES)
    assert result.choices[0].message.content == DEFAULT_REPLY
    assert len(fake.requests) == 2
    assert len(fake.chat_requests()) == 2


def test_failure_body_and_retry_headers(fake: FakeOpenAI) -> None:
    fake.fail_next(429, retry_after=1.5, message="slow down")
    response = httpx.post(f"{fake.base_url}/embeddings", json={"model": "e", "input": "x"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1.5"
    assert response.headers["retry-after-ms"] == "1500"
    error = response.json()["error"]
    assert error["message"] == "slow down"
    assert error["code"] == "rate_limit_exceeded"


def test_persistent_500_raises_internal_server_error(fake: FakeOpenAI) -> None:
    fake.fail_next(500, times=5)
    with sync_client(fake, max_retries=1) as client, pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert info.value.status_code == 500
    assert len(fake.requests) == 2  # first attempt + one retry; three scripted failures remain


def test_malformed_stream_raises_while_iterating(fake: FakeOpenAI) -> None:
    fake.malformed_stream_next()
    received: list[str] = []
    with sync_client(fake) as client:
        stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        # openai 3.51 does not wrap this: Stream.__stream__ calls json.loads on the event data, so the raw
        # json.JSONDecodeError (a ValueError, not an openai.APIError) escapes from the iteration.
        with pytest.raises(json.JSONDecodeError):
            for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")
    assert received == ["Fake "]  # the one valid chunk arrived first

    # only the next stream is affected
    with sync_client(fake) as client:
        chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == DEFAULT_REPLY


async def test_async_malformed_stream_raises(fake: FakeOpenAI) -> None:
    fake.malformed_stream_next()
    async with async_client(fake) as client:
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        with pytest.raises(json.JSONDecodeError):
            async for _ in stream:
                pass


def test_stall_with_client_timeout_raises_api_timeout_error() -> None:
    fake = FakeOpenAI()
    with fake:
        fake.stall_next(3600)
        with sync_client(fake, timeout=0.5) as client, pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert len(fake.requests) == 1
        server_thread, base_url = fake._thread, fake.base_url
    # stopping cut the hour-long stall short: the server thread ended and the port no longer answers
    assert server_thread is not None and not server_thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/models", timeout=5.0)


async def test_async_stall_timeout(fake: FakeOpenAI) -> None:
    fake.stall_next(5)
    async with async_client(fake, timeout=0.5) as client:
        with pytest.raises(openai.APITimeoutError):
            await client.embeddings.create(model="e", input="x")


def test_reply_callable_error_becomes_openai_style_500() -> None:
    def reply(body: dict) -> str:
        raise RuntimeError("boom")

    with FakeOpenAI(reply=reply) as fake, sync_client(fake) as client:
        with pytest.raises(openai.InternalServerError, match="boom"):
            client.chat.completions.create(model="m", messages=MESSAGES)
