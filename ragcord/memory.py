"""Conversation memory in Redis: what was said in a conversation (a Discord thread, a CLI chat).

Keys (P = key prefix, C = conversation id):
  P:conv:C:turns    list of JSON turns, oldest first
  P:conv:C:summary  string: running summary of the turns folded out of the window
Both expire `ttl_seconds` after the last append, so a conversation lives as long as people use it. It
lives only in Redis, so it survives restarts of every process.
Each change that touches both keys is one Lua script (`ragcord/lua/memory/*.lua`). Follow-up questions are
answering's business: `ragcord.answering.followup`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import redis

from ragcord.errors import InvalidArgument
from ragcord.lua import script_source

__all__ = [
    "Conversation",
    "ConversationMemory",
    "Summarizer",
    "TokenCounter",
    "Turn",
    "WordEstimate",
    "select_window",
]

log = logging.getLogger(__name__)

ROLES = ("user", "assistant")


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "assistant"]
    text: str
    author: str = ""  # who said it (display name or user id); "" for the assistant
    at: float = 0.0  # epoch seconds; append() fills in the time when 0
    cited_urls: tuple[str, ...] = ()

    def to_json(self) -> str:
        data = {**dataclasses.asdict(self), "cited_urls": list(self.cited_urls)}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Turn:
        data = json.loads(raw)
        return cls(
            role=data["role"],
            text=data["text"],
            author=data.get("author", ""),
            at=float(data.get("at", 0.0)),
            cited_urls=tuple(data.get("cited_urls", ())),
        )


@dataclass(frozen=True)
class Conversation:
    id: str
    summary: str = ""  # running summary of older turns folded out of the window ("" if none)
    turns: list[Turn] = field(default_factory=list)  # the window: most recent turns, oldest first


class Summarizer(Protocol):
    def summarize(self, previous_summary: str, turns: list[Turn]) -> str: ...


# -- counting tokens ----------------------------------------------------------------------------------------


class TokenCounter(Protocol):
    """What the window's token budget is measured with."""

    def count(self, text: str) -> int: ...


class WordEstimate:
    """About 4 tokens per 3 words (English prose under OpenAI's tokenizers); needs no model files."""

    def count(self, text: str) -> int:
        return math.ceil(len(text.split()) * 4 / 3)


def select_window(turns: Sequence[Turn], budget: int, counter: TokenCounter) -> tuple[list[Turn], list[Turn]]:
    """(folded, window): the latest turns whose texts fit `budget` tokens (at least one), and the rest."""
    used = 0
    start = len(turns)
    while start > 0:
        cost = counter.count(turns[start - 1].text)
        if start < len(turns) and used + cost > budget:
            break
        used += cost
        start -= 1
    return list(turns[:start]), list(turns[start:])


# -- Redis ----------------------------------------------------------------------------------------------

_CONVERSATION_ID = re.compile(r"\S{1,128}")


def _check_id(conversation_id: str) -> str:
    if not isinstance(conversation_id, str) or not _CONVERSATION_ID.fullmatch(conversation_id):
        shown = repr(conversation_id)[:60]
        raise InvalidArgument(
            f"conversation id {shown} is not valid: use 1 to 128 characters without whitespace "
            "(a Discord thread id works)"
        )
    return conversation_id


class ConversationMemory:
    """The turns of each conversation and a running summary of the older ones, kept in Redis."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        ttl_seconds: int = 30 * 86400,
        token_budget: int = 1500,
        summarizer: Summarizer | None = None,
        counter: TokenCounter | None = None,
        max_turns: int = 200,
    ) -> None:
        if ttl_seconds < 1 or token_budget < 1 or max_turns < 1:
            raise ValueError("ttl_seconds, token_budget and max_turns must be positive")
        self.redis = client
        self.prefix = prefix
        self.ttl_seconds = int(ttl_seconds)
        self.token_budget = token_budget
        self.summarizer = summarizer
        self.counter: TokenCounter = counter or WordEstimate()
        self.max_turns = max_turns
        self._append = client.register_script(script_source("ragcord.lua", "memory/append.lua"))
        self._fold = client.register_script(script_source("ragcord.lua", "memory/fold.lua"))
        self._merge = client.register_script(script_source("ragcord.lua", "memory/merge.lua"))

    def _keys(self, conversation_id: str) -> list[str]:
        base = f"{self.prefix}:conv:{_check_id(conversation_id)}"
        return [f"{base}:turns", f"{base}:summary"]

    @property
    def _cap(self) -> int:
        # With a summarizer, turns beyond the window are folded into the summary instead of dropped.
        return 0 if self.summarizer is not None else self.max_turns

    def append(self, conversation_id: str, *turns: Turn) -> None:
        """Adds turns at the end in one step and restarts the conversation's time to live."""
        keys = self._keys(conversation_id)
        for turn in turns:
            if turn.role not in ROLES or not isinstance(turn.text, str):
                raise InvalidArgument(f"a turn needs a role in {ROLES} and a text; got {turn.role!r}")
        if not turns:
            return
        now = time.time()
        payload = [(turn if turn.at else dataclasses.replace(turn, at=now)).to_json() for turn in turns]
        self._append(keys=keys, args=[self.ttl_seconds, self._cap, *payload])

    def load(self, conversation_id: str) -> Conversation:
        """The summary and the window; with a summarizer, turns outside the window are folded first."""
        keys = self._keys(conversation_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.lrange(keys[0], 0, -1)
        pipe.get(keys[1])
        raw_turns, raw_summary = pipe.execute()
        summary = raw_summary.decode() if raw_summary is not None else ""
        positions: list[int] = []
        turns: list[Turn] = []
        for position, raw in enumerate(raw_turns):
            try:
                turns.append(Turn.from_json(raw))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("skipping a malformed turn in conversation %s: %r", conversation_id, exc)
                continue
            positions.append(position)
        folded, window = select_window(turns, self.token_budget, self.counter)
        if folded and self.summarizer is not None:
            summary = self._fold_into_summary(keys, summary, folded, raw_turns[: positions[len(folded)]])
        return Conversation(id=conversation_id, summary=summary, turns=window)

    def _fold_into_summary(self, keys: list[str], summary: str, folded: list[Turn], raw: list[bytes]) -> str:
        assert self.summarizer is not None
        try:
            new_summary = self.summarizer.summarize(summary, folded)
        except Exception as exc:  # noqa: BLE001 - the turns stay stored; the next load folds them
            log.warning("summarizing %d turns of %s failed, folding later: %r", len(folded), keys[0], exc)
            return summary
        folded_now, current = self._fold(keys=keys, args=[self.ttl_seconds, summary, new_summary, *raw])
        if not folded_now:
            log.debug("%s changed while summarizing; folding on a later load", keys[0])
        return current.decode() if isinstance(current, bytes) else str(current)

    def rename(self, old_id: str, new_id: str) -> int:
        """Continues conversation `old_id` as `new_id`, after any turns `new_id` has; returns turns moved."""
        source, target = self._keys(old_id), self._keys(new_id)
        if old_id == new_id:
            return 0
        return int(self._merge(keys=[*source, *target], args=[self.ttl_seconds, self._cap]))

    def clear(self, conversation_id: str) -> bool:
        """Forgets the conversation; True when something was deleted."""
        return bool(self.redis.delete(*self._keys(conversation_id)))

    def ttl(self, conversation_id: str) -> int:
        """Seconds the conversation has left; -2 when there is none (Redis TTL semantics)."""
        return int(self.redis.ttl(self._keys(conversation_id)[0]))
