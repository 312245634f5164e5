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

import redis

from ragcord.crawls import RECRAWL_FIELD
from ragcord.jobs import EventKind, JobRecord, JobStore

__all__ = ["Changes", "ServerUpdates", "changes_of", "ended_recrawls", "summary_text"]

UPDATE_MEMORY_SECONDS = 60 * 86400  # longer than any job retention worth having
_LISTED = 8  # links shown per kind of change


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
            out[_text(guild)] = (str(entry["channel"]), float(entry["since"]))
        return out

    def _posted_key(self, guild_id: int | str, recrawl: str) -> str:
        return f"{self.prefix}:kb-updates:posted:{{{guild_id}}}:{recrawl}"

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


def ended_recrawls(jobs: JobStore, knowledge_base: str, since: float) -> list[tuple[str, list[JobRecord]]]:
    """The re-crawls of the knowledge base started since `since` whose every job has ended, oldest first."""
    listed, _ = jobs.list(knowledge_base=knowledge_base, page_size=200)
    recent = [j for j in listed if (j.created_at or 0) >= since]
    if not recent:
        return []
    pipe = jobs.redis.pipeline(transaction=False)
    for job in recent:
        pipe.hget(jobs.keys.job(job.id), RECRAWL_FIELD)
    batches: dict[str, list[JobRecord]] = {}
    for job, batch in zip(recent, pipe.execute(), strict=True):
        if batch:
            batches.setdefault(_text(batch), []).append(job)
    ended = [
        (batch, sorted(members, key=lambda j: j.created_at or 0))
        for batch, members in batches.items()
        if all(j.state.terminal for j in members)
    ]
    return sorted(ended, key=lambda item: item[1][0].created_at or 0)


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
