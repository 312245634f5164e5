"""Every question asked and what became of it, per knowledge base: what the documentation is missing.

A question is recorded when it is answered (outcome "answered" or "not_found"); later events mark it: a 👍 or
👎 vote, a handoff to the support team, solved (by the asker, or by staff). Who asked is kept only as a
salted hash. Everything expires `retention_seconds` after the question (RAGCORD_QUESTION_RETENTION_DAYS).

Keys (P = key prefix, K = knowledge base, Q = question id, T = thread id):
  P:questions:salt        string: the generated salt (when settings give none)
  P:questions:K:log       sorted set: question ids by when asked (trimmed to the retention on every write)
  P:question:Q            hash: knowledge_base, text, user (hash), outcome, at, thread, vote, handed_off,
                          solved (asker | staff)
  P:question:thread:T     string: the thread's first question id (handoffs and resolutions mark it)

ListUnanswered groups the not-found and 👎 questions by meaning: greedy clustering, newest first, each
question joining the first cluster whose first (newest) question's embedding has cosine similarity >=
CLUSTER_THRESHOLD with its own, else starting a cluster. 0.75, measured with all-MiniLM-L6-v2 (the local
embedder): three paraphrases of one question scored 0.79-0.90 with each other, three different questions
about one product 0.48-0.53 (the questions of tests/integration/test_questions.py).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, cast

import redis

from ragcord.errors import InvalidArgument
from ragcord.knowledge.embedders import Embedder
from ragcord.redisconn import reply_text
from ragcord.settings import Settings
from ragcord.urls import validate_kb_name

__all__ = [
    "CLUSTER_THRESHOLD",
    "Cluster",
    "DayStats",
    "QuestionLog",
    "QuestionRecord",
    "build_question_log",
    "cluster_questions",
    "total",
]

CLUSTER_THRESHOLD = 0.75
EXAMPLES = 3
Event = Literal["up", "down", "handed_off", "solved_asker", "solved_staff"]


@dataclass(frozen=True)
class QuestionRecord:
    id: str
    knowledge_base: str
    text: str
    user: str  # salted hash
    outcome: str  # answered | not_found
    at: float
    thread: str = ""
    vote: str = ""  # up | down | ""
    handed_off: bool = False
    solved: str = ""  # asker | staff | ""

    @property
    def unanswered(self) -> bool:
        return self.outcome == "not_found" or self.vote == "down"


@dataclass
class DayStats:
    day: str  # YYYY-MM-DD (UTC)
    questions: int = 0
    answered: int = 0
    up: int = 0
    down: int = 0
    handed_off: int = 0
    solved: int = 0
    solved_without_staff: int = 0  # solved by the asker with no handoff: deflection

    @property
    def answered_rate(self) -> float:
        return self.answered / self.questions if self.questions else 0.0

    @property
    def up_rate(self) -> float:
        return self.up / (self.up + self.down) if self.up + self.down else 0.0


def total(days: Sequence[DayStats]) -> DayStats:
    """All the days together (day "")."""
    out = DayStats("")
    for d in days:
        out.questions += d.questions
        out.answered += d.answered
        out.up += d.up
        out.down += d.down
        out.handed_off += d.handed_off
        out.solved += d.solved
        out.solved_without_staff += d.solved_without_staff
    return out


@dataclass
class Cluster:
    count: int
    latest_at: float
    examples: list[str] = field(default_factory=list)  # newest first, at most EXAMPLES


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def cluster_questions(
    records: Sequence[QuestionRecord],
    vectors: Sequence[Sequence[float]],
    threshold: float = CLUSTER_THRESHOLD,
) -> list[Cluster]:
    """Greedy clustering (see the module's docstring); `records` newest first, one vector each."""
    clusters: list[tuple[Sequence[float], Cluster]] = []
    for record, vector in zip(records, vectors, strict=True):
        home = next((c for seed, c in clusters if vector and _cosine(seed, vector) >= threshold), None)
        if home is None:
            clusters.append((vector, Cluster(count=1, latest_at=record.at, examples=[record.text])))
            continue
        home.count += 1
        if len(home.examples) < EXAMPLES and record.text not in home.examples:
            home.examples.append(record.text)
    return sorted((c for _, c in clusters), key=lambda c: (-c.latest_at, -c.count))


class QuestionLog:
    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        retention_seconds: float = 90 * 86400,
        salt: str | None = None,
    ) -> None:
        if retention_seconds <= 0:
            raise ValueError("retention_seconds must be positive")
        self.redis = client
        self.prefix = prefix
        self.retention_seconds = retention_seconds
        self._salt = salt

    def _q(self, question_id: str) -> str:
        return f"{self.prefix}:question:{question_id}"

    def _log(self, knowledge_base: str) -> str:
        return f"{self.prefix}:questions:{knowledge_base}:log"

    def salt(self) -> str:
        if self._salt is None:
            key = f"{self.prefix}:questions:salt"
            self.redis.set(key, secrets.token_hex(16), nx=True)
            self._salt = reply_text(cast("bytes", self.redis.get(key)))
        return self._salt

    def user_hash(self, user: str) -> str:
        return hmac.new(self.salt().encode(), user.encode(), hashlib.sha256).hexdigest()[:16]

    def record(
        self,
        knowledge_base: str,
        question_id: str,
        text: str,
        *,
        user: str,
        found: bool,
        thread_id: int | str | None = None,
        at: float | None = None,
    ) -> None:
        at = time.time() if at is None else at
        ttl = max(1, math.ceil(self.retention_seconds - (time.time() - at)))
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            self._q(question_id),
            mapping={
                "knowledge_base": knowledge_base,
                "text": text,
                "user": self.user_hash(user),
                "outcome": "answered" if found else "not_found",
                "at": repr(at),
                "thread": str(thread_id or ""),
            },
        )
        pipe.expire(self._q(question_id), ttl)
        log_key = self._log(knowledge_base)
        pipe.zadd(log_key, {question_id: at})
        pipe.zremrangebyscore(log_key, "-inf", time.time() - self.retention_seconds)
        pipe.expire(log_key, math.ceil(self.retention_seconds))
        if thread_id:
            pipe.set(f"{self.prefix}:question:thread:{int(thread_id)}", question_id, nx=True, ex=ttl)
        pipe.execute()

    def mark(self, question_id: str, event: Event) -> bool:
        """Note what happened to a question; False when it is unknown (or expired)."""
        key = self._q(question_id)
        if not self.redis.exists(key):
            return False
        if event in ("up", "down"):
            self.redis.hset(key, "vote", event)
        elif event == "handed_off":
            self.redis.hset(key, "handed_off", "1")
        elif event in ("solved_asker", "solved_staff"):
            self.redis.hsetnx(key, "solved", event.removeprefix("solved_"))
        else:
            raise InvalidArgument(f"unknown question event {event!r}")
        return True

    def mark_thread(self, thread_id: int | str, event: Event) -> bool:
        question_id = self.redis.get(f"{self.prefix}:question:thread:{int(thread_id)}")
        return bool(question_id) and self.mark(reply_text(cast("bytes", question_id)), event)

    def questions(self, knowledge_base: str, *, since: float = 0.0) -> list[QuestionRecord]:
        """The knowledge base's questions asked at or after `since` (epoch seconds), newest first."""
        validate_kb_name(knowledge_base)
        floor = max(since, time.time() - self.retention_seconds)
        ids = cast("list[bytes]", self.redis.zrevrangebyscore(self._log(knowledge_base), "+inf", floor))
        pipe = self.redis.pipeline(transaction=False)
        for raw in ids:
            pipe.hgetall(self._q(reply_text(raw)))
        records = []
        for raw, data in zip(ids, pipe.execute(), strict=True):
            fields = {reply_text(k): reply_text(v) for k, v in data.items()}
            if not fields:
                continue  # expired
            records.append(
                QuestionRecord(
                    id=reply_text(raw),
                    knowledge_base=fields["knowledge_base"],
                    text=fields["text"],
                    user=fields["user"],
                    outcome=fields["outcome"],
                    at=float(fields["at"]),
                    thread=fields.get("thread", ""),
                    vote=fields.get("vote", ""),
                    handed_off=fields.get("handed_off") == "1",
                    solved=fields.get("solved", ""),
                )
            )
        return records

    def stats(self, knowledge_base: str, *, since: float = 0.0) -> list[DayStats]:
        """Per day (UTC), oldest first, days without questions left out."""
        days: dict[str, DayStats] = {}
        for r in self.questions(knowledge_base, since=since):
            day = datetime.fromtimestamp(r.at, UTC).strftime("%Y-%m-%d")
            d = days.setdefault(day, DayStats(day))
            d.questions += 1
            d.answered += r.outcome == "answered"
            d.up += r.vote == "up"
            d.down += r.vote == "down"
            d.handed_off += r.handed_off
            d.solved += bool(r.solved)
            d.solved_without_staff += r.solved == "asker" and not r.handed_off
        return [days[k] for k in sorted(days)]

    def unanswered(
        self,
        knowledge_base: str,
        embedder: Embedder,
        *,
        since: float = 0.0,
        threshold: float = CLUSTER_THRESHOLD,
    ) -> list[Cluster]:
        """Not-found and 👎 questions grouped by meaning, the newest cluster first."""
        records = [r for r in self.questions(knowledge_base, since=since) if r.unanswered]
        vectors = embedder.embed([r.text for r in records]) if records else []
        return cluster_questions(records, vectors, threshold)


def build_question_log(settings: Settings, client: redis.Redis) -> QuestionLog:
    salt = settings.question_salt.get_secret_value() if settings.question_salt else None
    return QuestionLog(
        client,
        prefix=settings.key_prefix,
        retention_seconds=settings.question_retention_days * 86400,
        salt=salt,
    )
