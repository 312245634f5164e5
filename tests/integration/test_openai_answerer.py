"""The openai answerer and embedder through the real openai client against a loopback server."""

from __future__ import annotations

import openai
import pytest

from ragcord.answering.llm import OpenAIAnswerer, OpenAIQueryRewriter, OpenAISummarizer, build_client
from ragcord.errors import AnswerUnavailable
from ragcord.knowledge.embedders import OpenAIEmbedder
from ragcord.knowledge.search import Hit
from ragcord.knowledge.stores import StoredChunk
from ragcord.memory import Conversation, Turn
from ragcord.settings import Settings
from tests.openai_fake import FakeOpenAI, fake_embedding

VENV = "Activate it with source .venv/bin/activate on Linux and macOS."
HISTORY = Conversation(
    id="c1",
    summary="",
    turns=[
        Turn(role="user", text="How do I create a virtual environment?"),
        Turn(role="assistant", text="Run python -m venv .venv [1].", cited_urls=("http://d/venv",)),
    ],
)


def hit(url: str, text: str) -> Hit:
    chunk = StoredChunk(
        id=url,
        url=url,
        title="Virtual environments",
        heading="",
        chunk_index=0,
        text=text,
        content_hash="",
        indexed_at=0.0,
    )
    return Hit(chunk=chunk, score=0.9, vector_score=0.7, passage=text)


HITS = [hit("http://d/venv", VENV), hit("http://d/docker", "Docker images are published.")]


def answerer(fake: FakeOpenAI, *, retries: int = 2, timeout: float = 10) -> OpenAIAnswerer:
    settings = Settings(
        _env_file=None,
        openai_base_url=fake.base_url,
        openai_api_key="sk-test",
        openai_max_retries=retries,
        openai_timeout_seconds=timeout,
    )
    return OpenAIAnswerer(build_client(settings), model="test-chat-model")


def test_a_non_streamed_answer_maps_citations_and_sends_the_grounded_prompt():
    with FakeOpenAI(reply=lambda body: "Run source .venv/bin/activate [1]. Also see [5].") as fake:
        answer = answerer(fake).answer("and how do I activate it?", HITS, HISTORY)
        (request,) = fake.chat_requests()
    assert answer.text == "Run source .venv/bin/activate [1]. Also see."
    assert [(c.number, c.url) for c in answer.citations] == [(1, "http://d/venv")]
    assert request["model"] == "test-chat-model"
    messages = request["messages"]
    assert messages[0]["role"] == "system" and "square brackets" in messages[0]["content"]
    assert [m["content"] for m in messages[1:3]] == [t.text for t in HISTORY.turns]
    assert "[1] Virtual environments — http://d/venv\n" + VENV in messages[-1]["content"]
    assert "[2] Virtual environments — http://d/docker" in messages[-1]["content"]
    assert messages[-1]["content"].endswith("Question: and how do I activate it?")


def test_a_streamed_answer_arrives_in_deltas_then_the_final_answer():
    with FakeOpenAI(reply=lambda body: "Use source .venv/bin/activate on Linux [1].") as fake:
        items = list(answerer(fake).stream("how do I activate it?", HITS, HISTORY))
        (request,) = fake.chat_requests()
    deltas, final = items[:-1], items[-1]
    assert len(deltas) >= 3 and all(isinstance(d, str) for d in deltas)
    assert "".join(deltas) == "Use source .venv/bin/activate on Linux [1]."
    assert (
        final.text == "Use source .venv/bin/activate on Linux [1]."
        and final.citations[0].url == "http://d/venv"
    )
    assert request["stream"] is True


def test_a_429_is_retried_then_succeeds():
    with FakeOpenAI() as fake:
        fake.fail_next(429, retry_after=0.01)
        answer = answerer(fake, retries=2).answer("q?", HITS, HISTORY)
        assert len(fake.chat_requests()) == 2
    assert answer.text.startswith("Fake answer")


def test_persistent_500s_end_in_a_clear_error():
    with FakeOpenAI() as fake:
        fake.fail_next(500, times=5)
        with pytest.raises(AnswerUnavailable, match="answered HTTP 500; try again"):
            answerer(fake, retries=1).answer("q?", HITS, HISTORY)
        assert len(fake.chat_requests()) == 2


def test_a_malformed_stream_is_a_clear_error():
    with FakeOpenAI() as fake:
        fake.malformed_stream_next()
        with pytest.raises(AnswerUnavailable, match="could not be read"):
            list(answerer(fake).stream("q?", HITS, HISTORY))


def test_a_timeout_is_a_clear_error():
    with FakeOpenAI() as fake:
        fake.stall_next(3)
        with pytest.raises(AnswerUnavailable, match="timed out"):
            answerer(fake, retries=0, timeout=0.5).answer("q?", HITS, HISTORY)


def test_rewriter_and_summarizer_use_the_chat_model():
    with FakeOpenAI(reply=lambda body: '"how to activate a virtual environment"') as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        query = OpenAIQueryRewriter(client, model="m").rewrite(HISTORY, "and how do I activate it?")
        summary = OpenAISummarizer(client, model="m").summarize("", HISTORY.turns)
        rewrite_request = fake.chat_requests()[0]
    assert query == "how to activate a virtual environment"
    assert summary
    assert "How do I create a virtual environment?" in rewrite_request["messages"][-1]["content"]


def test_openai_embeddings_batch_within_the_api_limits():
    with FakeOpenAI(embedding_dim=16) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        embedder = OpenAIEmbedder(client, model="text-embedding-3-small", dim=16)
        embedder.MAX_INPUTS = 3  # the real limit is 2048 inputs; a small one shows the batching
        texts = [f"passage {i}" for i in range(7)]
        vectors = embedder.embed(texts)
        batches = [r.json["input"] for r in fake.requests if r.path == "/v1/embeddings"]
    assert vectors == [fake_embedding(t, 16) for t in texts]
    assert [len(b) for b in batches] == [3, 3, 1]
    assert all(r == "text-embedding-3-small" for r in [fake.requests[0].json["model"]])
