"""👍/👎 on answers: each answer as it was given, one vote per person, counts per cited source.

Keys (P = key prefix):
  P:answers:A         hash: the answer (question, text, cited urls JSON, knowledge base, guild, created_at)
  P:answers:A:votes   hash: user id -> up | down (expires with the answer)
  P:feedback:log      sorted set: answer ids by the time of their latest vote (newest first listing); answers
                      that expired leave it (on the next vote, or when a listing meets them)
  P:feedback:kb:K     hash: "<url>|up" / "<url>|down" -> count, for answers from knowledge base K
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import redis

from ragcord.errors import InvalidArgument, NotFound
from ragcord.lua import script_source
from ragcord.redisconn import reply_text


def _decoded(raw: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    return {reply_text(k): reply_text(v) for k, v in raw.items()}


@dataclass(frozen=True)
class FeedbackRecord:
    answer_id: str
    question: str
    answer: str
    cited_urls: list[str]
    knowledge_base: str
    guild_id: str
    up: int
    down: int
    created_at: float


@dataclass(frozen=True)
class SourceFeedback:
    url: str
    up: int
    down: int


class FeedbackStore:
    def __init__(self, client: redis.Redis, *, prefix: str, ttl_seconds: int = 180 * 86400) -> None:
        self.redis = client
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self._vote = client.register_script(script_source("ragcord.lua", "feedback/vote.lua"))

    def _answer(self, answer_id: str) -> str:
        return f"{self.prefix}:answers:{answer_id}"

    def record_answer(
        self,
        answer_id: str,
        *,
        question: str,
        answer: str,
        cited_urls: list[str],
        knowledge_base: str,
        guild_id: str = "",
    ) -> None:
        key = self._answer(answer_id)
        self.redis.hset(
            key,
            mapping={
                "id": answer_id,
                "question": question,
                "text": answer,
                "cited_urls": json.dumps(cited_urls),
                "knowledge_base": knowledge_base,
                "guild_id": guild_id,
                "created_at": time.time(),
                "up": 0,
                "down": 0,
            },
        )
        self.redis.expire(key, self.ttl_seconds)

    def vote(self, answer_id: str, user_id: str, vote: str) -> None:
        if vote not in ("up", "down"):
            raise InvalidArgument("vote must be up or down")
        kb = self.redis.hget(self._answer(answer_id), "knowledge_base")
        if kb is None:
            raise NotFound(f"answer {answer_id} is unknown or expired")
        self._vote(
            keys=[
                self._answer(answer_id),
                f"{self._answer(answer_id)}:votes",
                f"{self.prefix}:feedback:log",
                f"{self.prefix}:feedback:kb:{reply_text(kb)}",
            ],
            args=[user_id, vote, time.time(), self.ttl_seconds],
        )

    def get(self, answer_id: str) -> FeedbackRecord:
        raw = _decoded(self.redis.hgetall(self._answer(answer_id)))
        if not raw:
            raise NotFound(f"answer {answer_id} is unknown or expired")
        return FeedbackRecord(
            answer_id=raw["id"],
            question=raw["question"],
            answer=raw["text"],
            cited_urls=json.loads(raw["cited_urls"]),
            knowledge_base=raw["knowledge_base"],
            guild_id=raw.get("guild_id", ""),
            up=int(raw.get("up", 0)),
            down=int(raw.get("down", 0)),
            created_at=float(raw["created_at"]),
        )

    # (`list` below is a method, so annotations after it in this class spell the builtin `builtins.list`.)

    def list(
        self, *, knowledge_base: str = "", limit: int = 50, offset: int = 0
    ) -> builtins.list[FeedbackRecord]:
        """Answers that received votes, most recently voted first."""
        records: builtins.list[FeedbackRecord] = []
        start = offset
        while len(records) < limit:
            # cast: redis-py types ZREVRANGE's reply for every withscores form; without scores: members only.
            log_key = f"{self.prefix}:feedback:log"
            ids = cast("builtins.list[bytes | str]", self.redis.zrevrange(log_key, start, start + 99))
            if not ids:
                break
            for raw_id in ids:
                start += 1
                try:
                    record = self.get(reply_text(raw_id))
                except NotFound:  # expired: the log lets go of it
                    self.redis.zrem(log_key, raw_id)
                    start -= 1
                    continue
                if knowledge_base and record.knowledge_base != knowledge_base:
                    continue
                records.append(record)
                if len(records) == limit:
                    break
        return records

    def per_source(self, knowledge_base: str) -> builtins.list[SourceFeedback]:
        counts: dict[str, dict[str, int]] = {}
        raw = self.redis.hgetall(f"{self.prefix}:feedback:kb:{knowledge_base}")
        for field, value in _decoded(raw).items():
            url, _, vote = field.rpartition("|")
            counts.setdefault(url, {"up": 0, "down": 0})[vote] = int(value)
        return sorted(
            (SourceFeedback(url, c["up"], c["down"]) for url, c in counts.items()),
            key=lambda s: (-(s.up + s.down), s.url),
        )
