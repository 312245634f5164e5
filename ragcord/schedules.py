"""Re-crawl schedules of knowledge bases: stored in Redis, fired by whichever worker process claims them.

Keys (P = key prefix; the `{schedules}` hash tag keeps both in one Redis Cluster slot for the claim script):
  P:{schedules}:due    sorted set: knowledge base -> when its schedule fires next (epoch seconds)
  P:{schedules}:every  hash: knowledge base -> seconds between re-crawls

Every worker process runs a scheduler (workers/schedules.py) that calls `fire_due` every few seconds. A
firing is claimed in one Lua script that moves it to its next time, so one process gets it however many look;
a process that dies right after claiming loses that one firing, never the schedule. A firing while a crawl
into the knowledge base runs is skipped (the knowledge base's crawl claim refuses it): a schedule never
overlaps itself, nor a crawl started by hand.

Next firing = now + every + an offset that depends only on the knowledge base's name (up to every/10 and at
most 300 s), so schedules set at once (or fleets restored from a backup) do not all fire in the same second.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import redis

from ragcord.crawls import Enqueue, recrawl_knowledge_base
from ragcord.errors import Aborted, InvalidArgument, RagcordError
from ragcord.jobs import JobRecord, JobStore
from ragcord.lua import script_source
from ragcord.settings import Settings
from ragcord.urls import validate_kb_name

__all__ = [
    "MAX_EVERY_SECONDS",
    "Schedule",
    "Schedules",
    "describe_every",
    "fire_due",
    "jitter_seconds",
    "parse_every",
]

log = logging.getLogger(__name__)

MAX_EVERY_SECONDS = 366 * 86400
_MAX_JITTER = 300


def jitter_seconds(knowledge_base: str, every_seconds: int) -> int:
    """The knowledge base's fixed offset: hash(name) mod min(every/10, 300) seconds."""
    span = min(every_seconds // 10, _MAX_JITTER)
    if span <= 0:
        return 0
    digest = hashlib.sha256(knowledge_base.encode()).digest()
    return int.from_bytes(digest[:8], "big") % span


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_EVERY = re.compile(r"^\s*(\d{1,7})\s*([dhms])\s*$", re.IGNORECASE)


def parse_every(text: str) -> int:
    """`1d`, `12h`, `30m`, `90s` as seconds; `off` (or `0`) as 0. InvalidArgument otherwise."""
    if text.strip().lower() in ("off", "0", "none", "never"):
        return 0
    match = _EVERY.match(text)
    if not match:
        raise InvalidArgument(f"{text[:40]!r} is not an interval: use e.g. 1d, 12h, 30m, or off")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def describe_every(seconds: int) -> str:
    """The interval in the largest unit that divides it: 86400 -> `1d`, 5400 -> `90m`."""
    for unit, size in _UNITS.items():
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Schedule:
    knowledge_base: str
    every_seconds: int
    next_run_at: float


class Schedules:
    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self.redis = client
        self.due_key = f"{prefix}:{{schedules}}:due"
        self.every_key = f"{prefix}:{{schedules}}:every"
        self._claim = client.register_script(script_source("ragcord.lua", "kbs/claim_firing.lua"))

    def next_after(self, knowledge_base: str, every_seconds: int, now: float) -> float:
        return now + every_seconds + jitter_seconds(knowledge_base, every_seconds)

    def set(self, knowledge_base: str, every_seconds: int, *, min_seconds: int) -> Schedule | None:
        """Re-crawl every `every_seconds` from now on (0 removes the schedule: None)."""
        validate_kb_name(knowledge_base)
        if every_seconds == 0:
            self.remove(knowledge_base)
            return None
        if not min_seconds <= every_seconds <= MAX_EVERY_SECONDS:
            raise InvalidArgument(
                f"every_seconds must be between {min_seconds} (RAGCORD_SCHEDULE_MIN_SECONDS) and "
                f"{MAX_EVERY_SECONDS} (a year), or 0 to remove the schedule; got {every_seconds}"
            )
        at = self.next_after(knowledge_base, every_seconds, time.time())
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.every_key, knowledge_base, every_seconds)
            pipe.zadd(self.due_key, {knowledge_base: at})
            pipe.execute()
        return Schedule(knowledge_base, every_seconds, at)

    def remove(self, knowledge_base: str) -> bool:
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.every_key, knowledge_base)
            pipe.zrem(self.due_key, knowledge_base)
            removed = pipe.execute()
        return bool(removed[0])

    def get(self, knowledge_base: str) -> Schedule | None:
        every = self.redis.hget(self.every_key, knowledge_base)
        at = self.redis.zscore(self.due_key, knowledge_base)
        if every is None or at is None:
            return None
        return Schedule(knowledge_base, int(every), float(at))

    def list(self) -> list[Schedule]:
        """Every schedule, soonest first."""
        pairs = cast("list[tuple[bytes, float]]", self.redis.zrange(self.due_key, 0, -1, withscores=True))
        every = cast("dict[bytes, bytes]", self.redis.hgetall(self.every_key))
        return [Schedule(name.decode(), int(every[name]), float(at)) for name, at in pairs if name in every]

    def due(self, now: float, *, limit: int = 100) -> builtins.list[str]:
        names = cast(
            "builtins.list[bytes]", self.redis.zrangebyscore(self.due_key, "-inf", now, start=0, num=limit)
        )
        return [n.decode() for n in names]

    def claim(self, knowledge_base: str, now: float) -> bool:
        """Takes this firing for the caller (exactly one caller gets it) and sets the next one."""
        raw = self.redis.hget(self.every_key, knowledge_base)
        if raw is None:
            return False
        following = self.next_after(knowledge_base, int(raw), now)
        return bool(self._claim(keys=[self.due_key, self.every_key], args=[now, knowledge_base, following]))


def fire_due(
    settings: Settings,
    schedules: Schedules,
    jobs: JobStore,
    enqueue: Enqueue,
    *,
    now: Callable[[], float] = time.time,
) -> dict[str, list[JobRecord] | str]:
    """Fires the schedules due now that this process claims: the jobs each started, or why it skipped."""
    fired: dict[str, list[JobRecord] | str] = {}
    at = now()
    for kb in schedules.due(at):
        if not schedules.claim(kb, at):
            continue  # another process took it
        try:
            started = recrawl_knowledge_base(settings, jobs, enqueue, kb)
        except Aborted as exc:
            log.info("schedule of %s skipped: %s", kb, exc)
            fired[kb] = f"skipped: {exc}"
        except RagcordError as exc:
            log.warning("schedule of %s could not re-crawl: %s", kb, exc)
            fired[kb] = f"failed: {exc}"
        else:
            log.info("schedule of %s started %s", kb, ", ".join(j.id for j in started))
            fired[kb] = started
    return fired
