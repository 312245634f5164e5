"""Ask: conversation memory → standalone query → hybrid search → answerer → memory.

What the admin API's Ask/AskStream, the CLI's `ask`/`chat` and the Discord bot all call.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ragcord.answering.extractive import ExtractiveAnswerer
from ragcord.answering.followup import standalone_query
from ragcord.answering.types import Answer, Answerer
from ragcord.bootstrap import Services
from ragcord.errors import InvalidArgument
from ragcord.knowledge.records import KnowledgeBaseRecords
from ragcord.knowledge.rerank import RerankTuning
from ragcord.knowledge.search import Hit, Retriever
from ragcord.memory import Conversation, ConversationMemory, Turn
from ragcord.urls import validate_kb_name

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000


class QueryRewriter(Protocol):
    def rewrite(self, conversation: Conversation, question: str) -> str: ...


@dataclasses.dataclass(frozen=True)
class _Prepared:
    question: str
    knowledge_base: str
    conversation_id: str
    conversation: Conversation
    query: str
    hits: list[Hit]
    timings_ms: dict[str, float]
    instructions: str = ""  # the knowledge base's answer instructions


class AskService:
    def __init__(
        self,
        *,
        retriever: Retriever,
        answerer: Answerer,
        memory: ConversationMemory,
        default_knowledge_base: str,
        top_k: int = 5,
        rewriter: QueryRewriter | None = None,
        instructions: Callable[[str], str] | None = None,
    ) -> None:
        """`instructions`: knowledge base name -> its answer instructions ("" for none)."""
        self.retriever = retriever
        self.answerer = answerer
        self.memory = memory
        self.default_knowledge_base = default_knowledge_base
        self.top_k = top_k
        self.rewriter = rewriter
        self.instructions = instructions
        # Refuses when search found nothing; the configured one when it is extractive (same settings).
        self._empty = answerer if isinstance(answerer, ExtractiveAnswerer) else ExtractiveAnswerer()

    def ask(
        self,
        question: str,
        *,
        knowledge_base: str = "",
        conversation_id: str = "",
        top_k: int = 0,
        author: str = "",
    ) -> Answer:
        prepared = self._prepare(question, knowledge_base, conversation_id, top_k)
        started = time.perf_counter()
        extra = _instructed(prepared)
        if prepared.hits:
            answer = self.answerer.answer(prepared.question, prepared.hits, prepared.conversation, **extra)
        else:
            answer = self._empty.answer(prepared.question, [], **extra)
        return self._finish(prepared, answer, author, started)

    def ask_stream(
        self,
        question: str,
        *,
        knowledge_base: str = "",
        conversation_id: str = "",
        top_k: int = 0,
        author: str = "",
    ) -> Iterator[str | Answer]:
        """Text deltas as the answer is written, then the final Answer (with citations)."""
        prepared = self._prepare(question, knowledge_base, conversation_id, top_k)
        started = time.perf_counter()
        extra = _instructed(prepared)
        if not prepared.hits:
            answer = self._empty.answer(prepared.question, [], **extra)
            yield answer.text
            yield self._finish(prepared, answer, author, started)
            return
        for item in self.answerer.stream(prepared.question, prepared.hits, prepared.conversation, **extra):
            if isinstance(item, Answer):
                yield self._finish(prepared, item, author, started)
            else:
                yield item

    def clear(self, conversation_id: str) -> bool:
        return self.memory.clear(conversation_id)

    def _prepare(self, question: str, knowledge_base: str, conversation_id: str, top_k: int) -> _Prepared:
        question = (question or "").strip()
        if not question:
            raise InvalidArgument("question is empty: ask something about the documentation")
        if len(question) > MAX_QUESTION_CHARS:
            raise InvalidArgument(
                f"question is {len(question)} characters; keep it under {MAX_QUESTION_CHARS}"
            )
        if not 0 <= top_k <= 20:
            raise InvalidArgument("top_k must be between 1 and 20 (0 = the default)")
        kb = validate_kb_name(knowledge_base or self.default_knowledge_base)
        conversation_id = conversation_id or uuid.uuid4().hex
        timings: dict[str, float] = {}
        t = time.perf_counter()
        conversation = self.memory.load(conversation_id)
        timings["memory_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        query = self._standalone(conversation, question)
        timings["rewrite_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        # The learned second stage reads a question asked on its own, not one completed by the conversation.
        hits = self.retriever.search(kb, query, k=top_k or self.top_k, learned=query == question)
        timings["search_ms"] = (time.perf_counter() - t) * 1000
        instructions = self.instructions(kb) if self.instructions is not None else ""
        return _Prepared(question, kb, conversation_id, conversation, query, hits, timings, instructions)

    def _standalone(self, conversation: Conversation, question: str) -> str:
        if self.rewriter is not None and conversation.turns:
            try:
                return self.rewriter.rewrite(conversation, question)
            except Exception as exc:  # noqa: BLE001 - the deterministic rewrite is a fine fallback
                log.warning("query rewrite failed, using the deterministic one: %r", exc)
        return standalone_query(conversation, question)

    def _finish(self, prepared: _Prepared, answer: Answer, author: str, started: float) -> Answer:
        timings = {**prepared.timings_ms, "answer_ms": (time.perf_counter() - started) * 1000}
        self.memory.append(
            prepared.conversation_id,
            Turn(role="user", text=prepared.question, author=author),
            Turn(role="assistant", text=answer.text, cited_urls=tuple(c.url for c in answer.citations)),
        )
        return dataclasses.replace(
            answer, conversation_id=prepared.conversation_id, query=prepared.query, timings_ms=timings
        )


def _instructed(prepared: _Prepared) -> dict[str, Any]:
    """The answerer's keyword for the knowledge base's instructions, only when it has some (an Answerer
    without the keyword keeps working for knowledge bases without instructions)."""
    return {"instructions": prepared.instructions} if prepared.instructions else {}


def build_ask_service(services: Services) -> AskService:
    """The Ask service from the process's services (composition root helper)."""
    settings = services.settings
    summarizer = rewriter = None
    if settings.answerer == "openai":
        from ragcord.answering.llm import (
            OpenAIAnswerer,
            OpenAIQueryRewriter,
            OpenAISummarizer,
            build_client,
        )

        client = build_client(settings)
        answerer: Answerer = OpenAIAnswerer(client, model=settings.chat_model)
        rewriter = OpenAIQueryRewriter(client, model=settings.chat_model)
        summarizer = OpenAISummarizer(client, model=settings.chat_model)
    else:
        answerer = ExtractiveAnswerer(
            min_similarity=settings.min_similarity,
            min_term_coverage=settings.min_term_coverage,
            embedder=services.embedder if services.embedder.dim is not None else None,
        )
    memory = ConversationMemory(
        services.redis,
        prefix=settings.key_prefix,
        ttl_seconds=int(settings.memory_ttl_days * 86400),
        token_budget=settings.memory_token_budget,
        summarizer=summarizer,
    )
    retriever = Retriever(
        services.store,
        services.embedder,
        alpha=settings.search_alpha,
        fusion=settings.search_fusion,
        second_stage=RerankTuning() if settings.search_rerank else None,
        executor=services.executors.search,
    )
    return AskService(
        retriever=retriever,
        answerer=answerer,
        memory=memory,
        default_knowledge_base=settings.default_knowledge_base,
        top_k=settings.top_k,
        rewriter=rewriter,
        instructions=KnowledgeBaseRecords(services.redis, prefix=settings.key_prefix).instructions,
    )
