"""Conversation memory in Redis: what was said in a conversation (a Discord thread, a CLI chat).

Keys (P = key prefix, C = conversation id):
  P:conv:C:turns    list of JSON turns, oldest first
  P:conv:C:summary  string: running summary of turns folded out of the window
Both expire `ttl_seconds` after the last append, so a conversation lives as long as people use it and
survives restarts of every process.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

import redis

from ragcord.errors import InvalidArgument

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "assistant"]
    text: str
    author: str = ""
    at: float = 0.0
    cited_urls: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "cited_urls": list(self.cited_urls)}, separators=(",", ":"))

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
    summary: str = ""
    turns: list[Turn] = field(default_factory=list)


class Summarizer(Protocol):
    def summarize(self, previous_summary: str, turns: list[Turn]) -> str: ...


class TokenCounter:
    """tiktoken's cl100k_base when its file is already cached (no network here), else a word estimate."""

    def __init__(self) -> None:
        self._encoding = None
        self._tried = False
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    import os

                    import tiktoken
                    import tiktoken.load

                    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
                    if cache and os.path.isdir(cache) and os.listdir(cache):
                        self._encoding = tiktoken.get_encoding("cl100k_base")
                except Exception as exc:  # noqa: BLE001 - counting must never fail
                    log.debug("tiktoken unavailable, estimating tokens from words: %r", exc)
        return self._encoding

    def count(self, text: str) -> int:
        encoding = self._encoding if self._tried else self._load()
        if encoding is not None:
            return len(encoding.encode(text, disallowed_special=()))
        return math.ceil(len(text.split()) * 4 / 3)


def select_window(turns: list[Turn], budget: int, counter: TokenCounter) -> tuple[list[Turn], list[Turn]]:
    """(folded, window): the most recent turns within `budget` tokens (at least one), and the rest."""
    used = 0
    start = len(turns)
    for index in range(len(turns) - 1, -1, -1):
        cost = counter.count(turns[index].text) + 4
        if start < len(turns) and used + cost > budget:
            break
        used += cost
        start = index
    return turns[:start], turns[start:]


_ID = re.compile(r"^\S{1,128}$")
_FOLLOW_UP_START = ("and ", "also ", "what about", "how about", "then ", "so ")
_ANAPHORA = re.compile(r"\b(it|its|this|that|they|them|those|these|there|one)\b", re.IGNORECASE)

# KEYS: turns, summary. ARGV: ttl, max_turns (0 = no cap), turn JSON...
_APPEND = """
for i = 3, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
local cap = tonumber(ARGV[2])
if cap > 0 then redis.call('LTRIM', KEYS[1], -cap, -1) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
return redis.call('LLEN', KEYS[1])
"""

# KEYS: turns, summary. ARGV: ttl, new summary, folded turn JSON... Folds only when the list still
# starts with exactly those turns (a concurrent fold or clear changed nothing we rely on otherwise).
_FOLD = """
local n = #ARGV - 2
local head = redis.call('LRANGE', KEYS[1], 0, n - 1)
if #head ~= n then return 0 end
for i = 1, n do if head[i] ~= ARGV[i + 2] then return 0 end end
redis.call('LTRIM', KEYS[1], n, -1)
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[1])
return 1
"""


class ConversationMemory:
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
        self.redis = client
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.token_budget = token_budget
        self.summarizer = summarizer
        self.counter = counter or TokenCounter()
        self.max_turns = max_turns
        self._append = client.register_script(_APPEND)
        self._fold = client.register_script(_FOLD)

    def _keys(self, conversation_id: str) -> tuple[str, str]:
        if not isinstance(conversation_id, str) or not _ID.match(conversation_id):
            raise InvalidArgument(
                f"conversation_id {conversation_id!r} is not valid: 1-128 characters without spaces"
            )
        base = f"{self.prefix}:conv:{conversation_id}"
        return f"{base}:turns", f"{base}:summary"

    def append(self, conversation_id: str, *turns: Turn) -> None:
        turns_key, summary_key = self._keys(conversation_id)
        if not turns:
            return
        now = time.time()
        payload = [
            (t if t.at else Turn(t.role, t.text, t.author, now, t.cited_urls)).to_json() for t in turns
        ]
        cap = 0 if self.summarizer is not None else self.max_turns
        self._append(keys=[turns_key, summary_key], args=[self.ttl_seconds, cap, *payload])

    def load(self, conversation_id: str) -> Conversation:
        turns_key, summary_key = self._keys(conversation_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.lrange(turns_key, 0, -1)
        pipe.get(summary_key)
        raw_turns, raw_summary = pipe.execute()
        turns = [Turn.from_json(raw) for raw in raw_turns]
        summary = raw_summary.decode() if raw_summary else ""
        folded, window = select_window(turns, self.token_budget, self.counter)
        if folded and self.summarizer is not None:
            try:
                new_summary = self.summarizer.summarize(summary, folded)
            except Exception as exc:  # noqa: BLE001 - keep the conversation; fold next time
                log.warning("summarizing conversation %s failed: %r", conversation_id, exc)
            else:
                if self._fold(
                    keys=[turns_key, summary_key],
                    args=[self.ttl_seconds, new_summary, *raw_turns[: len(folded)]],
                ):
                    summary = new_summary
        return Conversation(id=conversation_id, summary=summary, turns=window)

    def rename(self, old_id: str, new_id: str) -> None:
        """Continue a conversation under another id (the bot: once the thread it answered in exists)."""
        old_turns, old_summary = self._keys(old_id)
        new_turns, new_summary = self._keys(new_id)
        for source, target in ((old_turns, new_turns), (old_summary, new_summary)):
            try:
                self.redis.rename(source, target)
            except redis.ResponseError:  # nothing stored under the old id
                pass

    def clear(self, conversation_id: str) -> bool:
        return bool(self.redis.delete(*self._keys(conversation_id)))

    def ttl(self, conversation_id: str) -> int:
        return int(self.redis.ttl(self._keys(conversation_id)[0]))


def _looks_like_follow_up(question: str) -> bool:
    lowered = question.strip().lower()
    return len(lowered.split()) < 8 or lowered.startswith(_FOLLOW_UP_START) or bool(_ANAPHORA.search(lowered))


def standalone_query(conversation: Conversation, question: str, *, max_words: int = 60) -> str:
    """A follow-up combined with the previous question(s), so search sees what "it" is (no model)."""
    previous = [t.text for t in conversation.turns if t.role == "user"][-2:]
    if not previous or not _looks_like_follow_up(question):
        return question
    words = " ".join([*previous, question]).split()
    return " ".join(words[-max_words:])
