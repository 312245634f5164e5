"""Conversation memory in Redis: what was said in a conversation (a Discord thread, a CLI chat).

Keys (P = key prefix, C = conversation id):
  P:conv:C:turns    list of JSON turns, oldest first
  P:conv:C:summary  string: running summary of the turns folded out of the window
Both expire `ttl_seconds` after the last append, so a conversation lives as long as people use it. It
lives only in Redis, so it survives restarts of every process.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import redis

from ragcord.errors import InvalidArgument

__all__ = [
    "Conversation",
    "ConversationMemory",
    "Summarizer",
    "TokenCounter",
    "Turn",
    "load_cached_encoding",
    "select_window",
    "standalone_query",
    "tiktoken_cache_path",
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

# cl100k_base as tiktoken_ext/openai_public.py defines it. We build the encoding from tiktoken's cache file
# ourselves because tiktoken.get_encoding() downloads the file when it is missing or stale, with no timeout.
_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|"""
    r"""\s*[\r\n]|\s+(?!\S)|\s"""
)
_CL100K_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}


def tiktoken_cache_path(cache_dir: str | None = None) -> str | None:
    """Where tiktoken keeps cl100k_base (its rule in tiktoken/load.py); None when its cache is off."""
    if cache_dir is None:
        cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR")
    if cache_dir is None:
        cache_dir = os.environ.get("DATA_GYM_CACHE_DIR")
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir:
        return None
    return os.path.join(cache_dir, hashlib.sha1(_CL100K_URL.encode()).hexdigest())


def load_cached_encoding(path: str, sha256: str = _CL100K_SHA256) -> Any | None:
    """cl100k_base built from a local BPE file whose hash matches, or None; never touches the network."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != sha256:
        log.debug("ignoring %s: not the cl100k_base file tiktoken expects", path)
        return None
    import tiktoken

    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(
        name="cl100k_base", pat_str=_CL100K_PATTERN, mergeable_ranks=ranks, special_tokens=_CL100K_SPECIAL
    )


class TokenCounter:
    """tiktoken's cl100k_base when it can be loaded offline, else an estimate from words."""

    def __init__(self, *, cache_dir: str | None = None) -> None:
        self.cache_dir = cache_dir  # None: where tiktoken itself looks (TIKTOKEN_CACHE_DIR, ...)
        self._encoding: Any | None = None
        self._tried = False
        self._lock = threading.Lock()

    def _load(self) -> Any | None:
        with self._lock:
            if not self._tried:
                try:
                    path = tiktoken_cache_path(self.cache_dir)
                    self._encoding = load_cached_encoding(path) if path else None
                except Exception as exc:  # noqa: BLE001 - counting must work without tiktoken
                    log.debug("tiktoken unavailable: %r", exc)
                if self._encoding is None:
                    log.debug("cl100k_base is not cached offline; estimating tokens from words")
                self._tried = True
        return self._encoding

    @property
    def exact(self) -> bool:
        """True when counts come from tiktoken, False when they are estimates."""
        return (self._encoding if self._tried else self._load()) is not None

    def count(self, text: str) -> int:
        encoding = self._encoding if self._tried else self._load()
        if encoding is not None:
            try:
                return len(encoding.encode(text, disallowed_special=()))
            except Exception as exc:  # noqa: BLE001 - fall back to the estimate for this text
                log.debug("tiktoken could not encode a text: %r", exc)
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

# KEYS: turns, summary. ARGV: ttl seconds, cap (0 = none), turn JSON... Returns the list's length.
_APPEND = """
for i = 3, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
local cap = tonumber(ARGV[2])
if cap > 0 then redis.call('LTRIM', KEYS[1], -cap, -1) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return redis.call('LLEN', KEYS[1])
"""

# KEYS: turns, summary. ARGV: ttl seconds, summary read before summarizing, new summary, folded turn JSON...
# Folds only when the summary and the head of the list are still what was summarized (a concurrent fold
# or clear changed them otherwise); appends only touch the tail. Returns {folded (0/1), current summary}.
_FOLD = """
local n = #ARGV - 3
local current = redis.call('GET', KEYS[2]) or ''
if current ~= ARGV[2] then return {0, current} end
local head = redis.call('LRANGE', KEYS[1], 0, n - 1)
if #head ~= n then return {0, current} end
for i = 1, n do
  if head[i] ~= ARGV[i + 3] then return {0, current} end
end
redis.call('LTRIM', KEYS[1], n, -1)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ttl)
else
  redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[1])
end
return {1, ARGV[3]}
"""

# KEYS: source turns, source summary, target turns, target summary. ARGV: ttl seconds, cap (0 = none).
# Appends the source's turns to the target's and joins the summaries. Returns the number of turns moved.
_MERGE = """
local moved = redis.call('LRANGE', KEYS[1], 0, -1)
local summary = redis.call('GET', KEYS[2])
if #moved == 0 and not summary then return 0 end
for i = 1, #moved do redis.call('RPUSH', KEYS[3], moved[i]) end
if summary then
  local existing = redis.call('GET', KEYS[4])
  if existing and existing ~= '' then summary = existing .. '\\n' .. summary end
  redis.call('SET', KEYS[4], summary)
end
redis.call('DEL', KEYS[1], KEYS[2])
local cap = tonumber(ARGV[2])
if cap > 0 then redis.call('LTRIM', KEYS[3], -cap, -1) end
redis.call('EXPIRE', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[4], ARGV[1])
return #moved
"""

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
        self.counter = counter or TokenCounter()
        self.max_turns = max_turns
        self._append = client.register_script(_APPEND)
        self._fold = client.register_script(_FOLD)
        self._merge = client.register_script(_MERGE)

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


# -- follow-up questions ----------------------------------------------------------------------------------

_SHORT_QUESTION_WORDS = 8
_FOLLOW_UP_START = re.compile(r"(?:and|also|what about|how about|then|so)\b", re.IGNORECASE)
_ANAPHORA = re.compile(r"\b(?:it|its|this|that|they|them|those|these|there|one)\b", re.IGNORECASE)


def _looks_like_follow_up(question: str) -> bool:
    stripped = question.strip()
    return (
        len(stripped.split()) < _SHORT_QUESTION_WORDS
        or bool(_FOLLOW_UP_START.match(stripped))
        or bool(_ANAPHORA.search(stripped))
    )


def standalone_query(conversation: Conversation, question: str, *, max_words: int = 60) -> str:
    """A follow-up prefixed with the last user question(s), so search sees what "it" is (no model)."""
    words = question.split()
    if not words or not _looks_like_follow_up(question):
        return question
    previous = [turn.text for turn in conversation.turns if turn.role == "user"][-2:]
    room = max_words - len(words)  # the question itself is never cut; older context words go first
    if not previous or room <= 0:
        return question
    context = " ".join(previous).split()[-room:]
    return " ".join([*context, *words])
