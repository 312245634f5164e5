"""What an answer is, whoever composed it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote, urldefrag

from ragcord.knowledge.search import Hit
from ragcord.memory import Conversation

# Characters a fragment may hold as they are (RFC 3986), less "(" and ")": they would end a markdown link.
_FRAGMENT_SAFE = "-._~!$&'*+,;=:@/?"


def cited_url(hit: Hit) -> str:
    """Where a click on the citation should land: the page, at the cited passage's section when known.

    Browsers match a percent-encoded fragment against the decoded element id, so encoding keeps the link
    intact in Discord markdown without missing the section.
    """
    if not hit.chunk.anchor or urldefrag(hit.url).fragment.startswith("/"):
        return hit.url  # a hash-routed page (`#/guide`, Docsify): its own fragment is the page
    return f"{urldefrag(hit.url).url}#{quote(hit.chunk.anchor, safe=_FRAGMENT_SAFE)}"


@dataclass(frozen=True)
class Citation:
    """One source of an answer: a distinct section of a page (two sections of one page are two citations).

    `url` is what a user opens: the page's URL, followed by `#anchor` of the cited section when the page
    gave it one (`cited_url`); `page_url` is the page alone, as the store and ListSources name it.
    """

    number: int  # the [n] used in the answer text
    url: str
    title: str
    snippet: str
    score: float

    @property
    def page_url(self) -> str:
        """The cited page without the section: for grouping by page, DeleteSource, feedback per page."""
        return urldefrag(self.url).url


@dataclass(frozen=True)
class Answer:
    text: str
    citations: list[Citation]
    found: bool  # False: the knowledge base does not answer this; citations are the closest pages
    conversation_id: str = ""
    query: str = ""  # the standalone search query the answer was retrieved with
    timings_ms: dict[str, float] = field(default_factory=dict)


class Answerer(Protocol):
    """Composes an answer from retrieved passages; streaming yields text deltas, then the Answer.

    `instructions`: the knowledge base's answer instructions (ragcord/answering/instructions.py); callers
    pass it only when there are some, so an answerer without the keyword still works without them."""

    name: str

    def answer(self, question: str, hits: list[Hit], conversation: Conversation) -> Answer: ...

    def stream(
        self, question: str, hits: list[Hit], conversation: Conversation
    ) -> Iterator[str | Answer]: ...
