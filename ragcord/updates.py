"""What a Discord server hears after a re-crawl of its knowledge base changed something (`/kb updates`).

The bot polls (every RAGCORD_UPDATES_POLL_SECONDS): for each server with an updates channel, the ended
re-crawls of the knowledge base bound to it since the channel was set, one summary per re-crawl (a
RecrawlKnowledgeBase or a schedule's firing: all its jobs, one per source). Polling the job store, not
following live events, is what makes it survive bot restarts: an ended re-crawl stays listed for the job
retention period, so a summary missed while the bot was down is posted when it is back. A per-server
`SET NX` on the re-crawl's id makes each summary posted once, however many bot processes (shards) look.

Keys (P = key prefix, G = Discord server id, B = re-crawl id: its first job's id):
  P:kb-updates                 hash: G -> JSON {"channel": channel id, "since": epoch seconds}
  P:kb-updates:posted:{G}:B    string: the re-crawl B was summarised for G (kept UPDATE_MEMORY_SECONDS)

What changed comes from `changes_of`, the one function that reads the jobs: it uses the jobs' counters of
updated, added and removed pages and their PAGE_REMOVED events when the job store has them (incremental
re-crawls), and otherwise counts every indexed page as re-indexed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

import redis

from ragcord.crawls import RECRAWL_FIELD
from ragcord.jobs import EventKind, JobRecord, JobStore
from ragcord.redisconn import reply_text

__all__ = ["Changes", "ServerUpdates", "changes_of", "ended_recrawls", "summary_text"]

UPDATE_MEMORY_SECONDS = 60 * 86400  # longer than any job retention worth having
_CLOCK_MARGIN = 300.0  # how far another process's clock may lag: jobs this recent are always looked at again
_LISTED = 8  # links shown per kind of change


class ServerUpdates:
    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix
        self.key = f"{prefix}:kb-updates"

    def set_channel(self, guild_id: int | str, channel_id: int | str, *, now: float | None = None) -> None:
        """From now on the server's re-crawl summaries go to this channel (earlier re-crawls: not told)."""
        entry = {"channel": str(channel_id), "since": time.time() if now is None else now}
        self.redis.hset(self.key, str(guild_id), json.dumps(entry))

    def clear(self, guild_id: int | str) -> bool:
        return bool(self.redis.hdel(self.key, str(guild_id)))

    def channel_of(self, guild_id: int | str) -> tuple[str, float] | None:
        raw = self.redis.hget(self.key, str(guild_id))
        if raw is None:
            return None
        entry = json.loads(raw)
        return str(entry["channel"]), float(entry["since"])

    def all(self) -> dict[str, tuple[str, float]]:
        """Server id -> (channel id, since when)."""
        out = {}
        for guild, raw in self.redis.hgetall(self.key).items():
            entry = json.loads(raw)
            out[reply_text(guild)] = (str(entry["channel"]), float(entry["since"]))
        return out

    def _posted_key(self, guild_id: int | str, recrawl: str) -> str:
        return f"{self.prefix}:kb-updates:posted:{{{guild_id}}}:{recrawl}"

    def advance(self, guild_id: int | str, channel_id: str, since: float) -> None:
        """The next look starts at `since` (unless the channel was changed or removed meanwhile)."""
        current = self.channel_of(guild_id)
        if current is not None and current[0] == channel_id and since > current[1]:
            self.redis.hset(self.key, str(guild_id), json.dumps({"channel": channel_id, "since": since}))

    def claim(self, guild_id: int | str, recrawl: str) -> bool:
        """True once per (server, re-crawl): the caller posts its summary."""
        return bool(self.redis.set(self._posted_key(guild_id, recrawl), 1, nx=True, ex=UPDATE_MEMORY_SECONDS))

    def unclaim(self, guild_id: int | str, recrawl: str) -> None:
        """The summary could not be posted: the next look tries again."""
        self.redis.delete(self._posted_key(guild_id, recrawl))

    def claimed(self, guild_id: int | str, recrawl: str) -> bool:
        return bool(self.redis.exists(self._posted_key(guild_id, recrawl)))


@dataclass(frozen=True)
class Changes:
    knowledge_base: str
    jobs: list[JobRecord]
    # With incremental re-crawls' counters: exact. Without: every indexed page is in `reindexed`.
    incremental: bool
    updated: int = 0
    added: int = 0
    removed: int = 0
    reindexed: int = 0
    failed: int = 0
    changed_urls: list[str] = field(default_factory=list)  # pages indexed (updated or added)
    removed_urls: list[str] = field(default_factory=list)

    @property
    def anything(self) -> bool:
        return bool(self.updated or self.added or self.removed or self.reindexed)


def _counter(job: JobRecord, name: str) -> int | None:
    value = getattr(job, name, None)
    return value if isinstance(value, int) else None


def changes_of(jobs: JobStore, records: list[JobRecord]) -> Changes:
    """What the re-crawl made of its knowledge base, from its jobs' counters and events."""
    incremental = all(_counter(j, "pages_updated") is not None for j in records)
    changed: list[str] = []
    removed: list[str] = []
    for job in records:
        for event in jobs.events(job.id, count=100_000):
            if event.kind is EventKind.PAGE_INDEXED and event.page_url not in changed:
                changed.append(event.page_url)
            elif event.kind.value == "PAGE_REMOVED" and event.page_url not in removed:
                removed.append(event.page_url)
    failed = sum(j.pages_failed for j in records)
    if incremental:
        return Changes(
            records[0].knowledge_base,
            records,
            True,
            updated=sum(_counter(j, "pages_updated") or 0 for j in records),
            added=sum(_counter(j, "pages_added") or 0 for j in records),
            removed=sum(_counter(j, "pages_removed") or 0 for j in records),
            failed=failed,
            changed_urls=changed,
            removed_urls=removed,
        )
    return Changes(
        records[0].knowledge_base,
        records,
        False,
        reindexed=len(changed),
        removed=len(removed),
        failed=failed,
        changed_urls=changed,
        removed_urls=removed,
    )


def ended_recrawls(
    jobs: JobStore, knowledge_base: str, since: float, *, now: float | None = None
) -> tuple[list[tuple[str, list[JobRecord]]], float]:
    """The re-crawls of the knowledge base created since `since` whose every job has ended, oldest first,
    and the `since` of the next look: the creation of the oldest re-crawl still running, else a margin
    (for clocks of other processes) before now. Reads only the jobs created since `since` (any knowledge
    base), through the job index, which is scored by creation time."""
    now = time.time() if now is None else now
    raw_ids = cast("list[bytes]", jobs.redis.zrangebyscore(jobs.keys.index, since, "+inf"))
    pipe = jobs.redis.pipeline(transaction=False)
    for raw_id in raw_ids:
        pipe.hgetall(jobs.keys.job(reply_text(raw_id)))
    batches: dict[str, list[JobRecord]] = {}
    for raw_id, raw in zip(raw_ids, pipe.execute(), strict=True):
        if not raw:
            continue  # expired
        fields = {reply_text(k): v for k, v in raw.items()}
        batch = fields.get(RECRAWL_FIELD)
        if not batch:
            continue
        job = JobRecord.from_hash(reply_text(raw_id), raw)
        if job.knowledge_base == knowledge_base:
            batches.setdefault(reply_text(batch), []).append(job)
    ended: list[tuple[str, list[JobRecord]]] = []
    running: list[tuple[str, list[JobRecord]]] = []
    for batch, members in batches.items():
        members.sort(key=lambda j: j.created_at or 0)
        (ended if all(j.state.terminal for j in members) else running).append((batch, members))
    ended.sort(key=lambda item: item[1][0].created_at or 0)
    next_since = min((m[0].created_at or now for _, m in running), default=now - _CLOCK_MARGIN)
    return ended, max(since, min(next_since, now - _CLOCK_MARGIN))


def _links(urls: Iterable[str]) -> str:
    shown = list(urls)
    text = ", ".join(f"<{u}>" for u in shown[:_LISTED])
    return text + (f" and {len(shown) - _LISTED} more" if len(shown) > _LISTED else "")


def summary_text(changes: Changes) -> str:
    """One Discord message (before clipping) about a re-crawl that changed something."""
    kb = changes.knowledge_base
    if changes.incremental:
        counts = f"{changes.updated} updated, {changes.added} added, {changes.removed} removed"
    else:
        counts = f"{changes.reindexed} re-indexed, {changes.removed} removed"
    if changes.failed:
        counts += f", {changes.failed} failed"
    lines = [f"📚 Re-crawl of `{kb}` finished — pages: {counts}."]
    if changes.changed_urls:
        lines.append(("Changed: " if changes.incremental else "Re-indexed: ") + _links(changes.changed_urls))
    if changes.removed_urls:
        lines.append("Removed: " + _links(changes.removed_urls))
    return "\n".join(lines)
