"""Support communities in Discord: which channels the bot answers new posts in, who to hand off to when it
cannot help, which threads were solved, and whether a post is a question at all.

Keys (P = key prefix, G = guild id, T = thread id):
  P:support:G             hash: "autoanswer:<channel id>" -> answer | suggest; "role" -> the support role's
                          id; "learn:<channel id>" -> "1" (learning from solved threads is on there)
  P:support:thread:T      string: the asker's user id (a support thread the bot answered in)
  P:support:handoff:T     string: set once (SET NX) when the thread was handed to the support role
  P:support:solved:T      hash: by (asker | staff), at, knowledge_base, answer (what solved it)
The per-thread keys expire after `keep_seconds` (by default the question retention).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from enum import StrEnum

import redis

from ragcord.errors import InvalidArgument
from ragcord.redisconn import reply_text

__all__ = ["Mode", "ServerSupport", "SupportSettings", "is_question", "usable_knowledge_bases"]

DEFAULT_KEEP_SECONDS = 90 * 86400


class Mode(StrEnum):
    ANSWER = "answer"  # post the answer in the new post
    SUGGEST = "suggest"  # post the top 3 pages only
    OFF = "off"


# -- is a post a question? ---------------------------------------------------------------------------------
# The rule (unit-tested in tests/unit/test_support_questions.py), on the title and the text together:
# 1. fewer than 2 words, or nothing but thanks/"solved"/"nvm" and the like: not a question;
# 2. a question mark anywhere: a question;
# 3. it starts (the title or the text) with an interrogative word ("how", "why", "can", "is there"...): a
#    question, even without the mark;
# 4. it asks for help or reports a failure ("help", "error", "doesn't work", "fails", "stuck", "how to"...):
#    a question;
# 5. anything else (announcements, show-and-tell, release notes): not a question.
_CLOSING_WORDS = {
    "thanks", "thank", "you", "thx", "ty", "tysm", "solved", "fixed", "resolved", "nvm", "nevermind",
    "never", "mind", "ok", "okay", "great", "awesome", "cool", "works", "now", "it", "got", "all",
    "good", "perfect", "cheers", "much", "so", "a", "lot", "!", "that", "did", "the", "trick",
}  # fmt: skip
_INTERROGATIVE = re.compile(
    r"^\s*(how|what|why|when|where|which|who|whom|whose|can|could|should|would|will|is|are|am|was|were|do|"
    r"does|did|has|have|any|anyone|anybody|is there|are there)\b",
    re.IGNORECASE,
)
_HELP = re.compile(
    r"\b(help|error|errors|exception|traceback|issue|problem|fail|fails|failed|failing|crash(es|ed)?|"
    r"broken|stuck|unable|can't|cannot|can not|won't|doesn't|does not|isn't|not working|how to|how do i|"
    r"trouble|wrong|missing|unexpected|bug)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[\w'!]+")


def is_question(title: str, text: str = "") -> bool:
    """Whether a post (its title and its first message) asks something the docs could answer."""
    whole = f"{title}\n{text}".strip()
    words = [w.lower() for w in _WORD.findall(whole)]
    if len(words) < 2 and "?" not in whole:
        return False
    if all(w.strip("!") in _CLOSING_WORDS or not w.strip("!") for w in words) and "?" not in whole:
        return False
    if "?" in whole:
        return True
    if _INTERROGATIVE.match(title) or _INTERROGATIVE.match(text):
        return True
    return bool(_HELP.search(whole))


# -- per-server settings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSupport:
    """A server's support settings."""

    autoanswer: dict[int, Mode] = field(default_factory=dict)  # channel id -> mode (never OFF)
    role_id: int | None = None  # the support role handed off to (also: its members' posts are not answered)
    learn: frozenset[int] = frozenset()  # channels whose solved threads become sources


class SupportSettings:
    def __init__(
        self, client: redis.Redis, *, prefix: str, keep_seconds: float = DEFAULT_KEEP_SECONDS
    ) -> None:
        if keep_seconds <= 0:
            raise ValueError("keep_seconds must be positive")
        self.redis = client
        self.prefix = prefix
        self.keep_seconds = int(keep_seconds)

    def _key(self, guild_id: int | str) -> str:
        return f"{self.prefix}:support:{int(guild_id)}"

    def get(self, guild_id: int | str) -> ServerSupport:
        raw = {reply_text(k): reply_text(v) for k, v in self.redis.hgetall(self._key(guild_id)).items()}
        autoanswer = {int(k.split(":", 1)[1]): Mode(v) for k, v in raw.items() if k.startswith("autoanswer:")}
        learn = frozenset(int(k.split(":", 1)[1]) for k in raw if k.startswith("learn:"))
        role = raw.get("role")
        return ServerSupport(autoanswer=autoanswer, role_id=int(role) if role else None, learn=learn)

    def set_autoanswer(self, guild_id: int | str, channel_id: int, mode: Mode | str) -> Mode:
        try:
            mode = Mode(mode)
        except ValueError:
            raise InvalidArgument(f"mode must be one of answer, suggest, off (got {mode!r})") from None
        field_name = f"autoanswer:{int(channel_id)}"
        if mode is Mode.OFF:
            self.redis.hdel(self._key(guild_id), field_name)
        else:
            self.redis.hset(self._key(guild_id), field_name, mode.value)
        return mode

    def mode_of(self, guild_id: int | str, channel_id: int | None) -> Mode:
        if channel_id is None:
            return Mode.OFF
        value = self.redis.hget(self._key(guild_id), f"autoanswer:{int(channel_id)}")
        return Mode(reply_text(value)) if value else Mode.OFF

    def set_role(self, guild_id: int | str, role_id: int | None) -> None:
        if role_id is None:
            self.redis.hdel(self._key(guild_id), "role")
        else:
            self.redis.hset(self._key(guild_id), "role", str(int(role_id)))

    def set_learn(self, guild_id: int | str, channel_id: int, enabled: bool) -> None:
        if enabled:
            self.redis.hset(self._key(guild_id), f"learn:{int(channel_id)}", "1")
        else:
            self.redis.hdel(self._key(guild_id), f"learn:{int(channel_id)}")

    def learns(self, guild_id: int | str, channel_id: int | None) -> bool:
        if channel_id is None:
            return False
        return bool(self.redis.hexists(self._key(guild_id), f"learn:{int(channel_id)}"))

    # -- per thread

    def open_thread(self, thread_id: int | str, asker_id: int) -> None:
        """A support thread the bot answered in, and who asked (their follow-ups are answered)."""
        self.redis.set(f"{self.prefix}:support:thread:{int(thread_id)}", str(asker_id), ex=self.keep_seconds)

    def asker_of(self, thread_id: int | str) -> int | None:
        value = self.redis.get(f"{self.prefix}:support:thread:{int(thread_id)}")
        return int(reply_text(value)) if value else None

    def claim_handoff(self, thread_id: int | str) -> bool:
        """True the first time only: a thread is handed to the support role at most once."""
        key = f"{self.prefix}:support:handoff:{int(thread_id)}"
        return bool(self.redis.set(key, str(time.time()), nx=True, ex=self.keep_seconds))

    def handed_off(self, thread_id: int | str) -> bool:
        return bool(self.redis.exists(f"{self.prefix}:support:handoff:{int(thread_id)}"))

    def record_solved(
        self, thread_id: int | str, *, by_staff: bool, knowledge_base: str, answer: str = ""
    ) -> bool:
        """Record the resolution; False when the thread was already solved (the first one stays)."""
        key = f"{self.prefix}:support:solved:{int(thread_id)}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(key, "at", str(time.time()))
        pipe.hset(key, mapping={"knowledge_base": knowledge_base})
        pipe.expire(key, self.keep_seconds)
        first = bool(pipe.execute()[0])
        if first:
            self.redis.hset(key, mapping={"by": "staff" if by_staff else "asker", "answer": answer})
        return first

    def solved(self, thread_id: int | str) -> dict[str, str]:
        raw = self.redis.hgetall(f"{self.prefix}:support:solved:{int(thread_id)}")
        return {reply_text(k): reply_text(v) for k, v in raw.items()}


def usable_knowledge_bases(
    names: list[str], servers_of: dict[str, set[str]], guild_id: int | str, typed: str = ""
) -> list[str]:
    """The knowledge bases a server may use (shared ones and its own) whose name contains `typed`, for
    autocomplete; `servers_of`: each name's servers (KnowledgeBaseOwners.servers_of)."""
    guild = str(int(guild_id))
    typed = typed.strip().lower()
    return sorted(
        n for n in names if (not servers_of.get(n) or guild in servers_of[n]) and typed in n.lower()
    )
