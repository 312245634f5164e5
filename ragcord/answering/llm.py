"""Answers from any OpenAI-compatible chat model (OpenAI, Ollama, vLLM, llama.cpp server).

The official client retries timeouts, 429 and 5xx with exponential backoff (`max_retries`); after that
the caller gets AnswerUnavailable with a message a user can act on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import openai

from ragcord.answering.prompt import (
    build_messages,
    instruction_fragments,
    map_citations,
    rewrite_messages,
    summary_messages,
)
from ragcord.answering.types import Answer
from ragcord.errors import AnswerUnavailable
from ragcord.knowledge.search import Hit
from ragcord.logs import REDACTED, known_secrets, redact, remember_secrets
from ragcord.memory import Conversation, Turn
from ragcord.settings import Settings

log = logging.getLogger(__name__)


def build_client(settings: Settings) -> openai.OpenAI:
    remember_secrets(settings)  # the answerers' output filter removes them from every reply
    return openai.OpenAI(
        api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed",
        base_url=settings.openai_base_url,
        timeout=settings.openai_timeout_seconds,
        max_retries=settings.openai_max_retries,
    )


def _api_key_of(exc: Exception) -> list[str]:
    """The key an exception's request was sent with (its Authorization header), to keep it out of logs."""
    request = getattr(exc, "request", None)
    header = str(getattr(request, "headers", {}).get("authorization", "")) if request is not None else ""
    return [header.removeprefix("Bearer ").strip()] if header else []


def _unavailable(exc: Exception) -> AnswerUnavailable:
    if isinstance(exc, openai.APITimeoutError):
        reason = "timed out"
    elif isinstance(exc, openai.RateLimitError):
        reason = "is rate limited (HTTP 429)"
    elif isinstance(exc, openai.APIStatusError):
        reason = f"answered HTTP {exc.status_code}"
    elif isinstance(exc, openai.APIConnectionError):
        reason = "could not be reached"
    else:
        reason = f"sent a response that could not be read ({type(exc).__name__})"
    log.warning("language model call failed: %s", redact(repr(exc), _api_key_of(exc)))
    return AnswerUnavailable(f"the language model {reason}; try again in a moment")


class OutputFilter:
    """Removes from a model's reply every secret the process knows and every sentence of the system
    prompt, also when one arrives split over several streamed deltas (the possible start of one is held
    back until it is complete or ruled out). A page can tell the model to print them; this is the check
    that does not depend on the model obeying its instructions."""

    def __init__(self, extra: list[str] | None = None) -> None:
        self.protected = sorted(
            {*known_secrets(), *(extra or []), *instruction_fragments()}, key=len, reverse=True
        )
        self.pending = ""

    def clean(self, text: str) -> str:
        for value in self.protected:
            if value in text:
                text = text.replace(value, REDACTED)
        return redact(text)

    def _held(self) -> int:
        """How many characters at the end of `pending` could begin a protected value."""
        held = 0
        for value in self.protected:
            for k in range(min(len(value) - 1, len(self.pending)), held, -1):
                if self.pending.endswith(value[:k]):
                    held = k
                    break
        return held

    def feed(self, delta: str) -> str:
        """The part of the stream so far that is safe to show."""
        self.pending = self.clean(self.pending + delta)
        cut = len(self.pending) - self._held()
        shown, self.pending = self.pending[:cut], self.pending[cut:]
        return shown

    def flush(self) -> str:
        shown, self.pending = self.clean(self.pending), ""
        return shown


def _api_key(client: openai.OpenAI) -> list[str]:
    key = getattr(client, "api_key", "")
    return [key] if isinstance(key, str) and key and key != "not-needed" else []


class OpenAIAnswerer:
    name = "openai"

    def __init__(self, client: openai.OpenAI, *, model: str, temperature: float = 0.1) -> None:
        self.client = client
        self.model = model
        self.temperature = temperature

    def answer(
        self, question: str, hits: list[Hit], conversation: Conversation, *, instructions: str = ""
    ) -> Answer:
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=build_messages(question, hits, conversation, instructions),
                temperature=self.temperature,
            )
        except openai.OpenAIError as exc:
            raise _unavailable(exc) from exc
        return self._final(self._filter().clean(response.choices[0].message.content or ""), hits)

    def _filter(self) -> OutputFilter:
        return OutputFilter(_api_key(self.client))

    def stream(
        self, question: str, hits: list[Hit], conversation: Conversation, *, instructions: str = ""
    ) -> Iterator[str | Answer]:
        parts: list[str] = []
        output = self._filter()
        try:
            stream = self.client.chat.completions.create(
                model=self.model,
                messages=build_messages(question, hits, conversation, instructions),
                temperature=self.temperature,
                stream=True,
            )
            for chunk in stream:
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta.content
                if delta and (shown := output.feed(delta)):
                    parts.append(shown)
                    yield shown
        except (openai.OpenAIError, ValueError) as exc:  # ValueError: a malformed server-sent event
            raise _unavailable(exc) from exc
        if rest := output.flush():
            parts.append(rest)
            yield rest
        yield self._final(output.clean("".join(parts)), hits)

    def _final(self, text: str, hits: list[Hit]) -> Answer:
        cleaned, citations = map_citations(text, hits)
        return Answer(text=cleaned, citations=citations, found=bool(hits) and bool(cleaned))


class OpenAIQueryRewriter:
    """Turns a follow-up into a standalone search query with the chat model."""

    def __init__(self, client: openai.OpenAI, *, model: str) -> None:
        self.client = client
        self.model = model

    def rewrite(self, conversation: Conversation, question: str) -> str:
        response = self.client.chat.completions.create(
            model=self.model, messages=rewrite_messages(conversation, question), temperature=0, max_tokens=80
        )
        query = OutputFilter(_api_key(self.client)).clean(response.choices[0].message.content or question)
        return query.strip().strip('"') or question


class OpenAISummarizer:
    """Folds older turns into a running summary (used by the conversation memory)."""

    def __init__(self, client: openai.OpenAI, *, model: str) -> None:
        self.client = client
        self.model = model

    def summarize(self, previous_summary: str, turns: list[Turn]) -> str:
        text = "\n".join(f"{t.role}: {t.text}" for t in turns)
        response = self.client.chat.completions.create(
            model=self.model, messages=summary_messages(previous_summary, text), temperature=0, max_tokens=200
        )
        return (response.choices[0].message.content or previous_summary).strip()
