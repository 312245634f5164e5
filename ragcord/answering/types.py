"""What an answer is, whoever composed it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ragcord.knowledge.search import Hit
from ragcord.memory import Conversation


@dataclass(frozen=True)
class Citation:
    number: int  # the [n] used in the answer text
    url: str
    title: str
    snippet: str
    score: float


@dataclass(frozen=True)
class Answer:
    text: str
    citations: list[Citation]
    found: bool  # False: the knowledge base does not answer this; citations are the closest pages
    conversation_id: str = ""
    query: str = ""  # the standalone search query the answer was retrieved with
    timings_ms: dict[str, float] = field(default_factory=dict)


class Answerer(Protocol):
    """Composes an answer from retrieved passages; streaming yields text deltas, then the Answer."""

    name: str

    def answer(self, question: str, hits: list[Hit], conversation: Conversation) -> Answer: ...

    def stream(
        self, question: str, hits: list[Hit], conversation: Conversation
    ) -> Iterator[str | Answer]: ...
