"""Learning from solved support threads: a solved thread (where the server turned learning on) becomes a
source of the server's own knowledge base, the question and the answer that solved it, with the authors
anonymised, cited as the thread's Discord link. Edits re-index it; deleting either message or the thread,
or turning learning off, removes it.

Keys (P = key prefix, T = thread id, G = guild id, C = the thread's channel (forum) id):
  P:learned:T          hash: guild, channel, knowledge_base, url, title, question, answer, answered_by,
                       question_message, answer_message
  P:learned:G:C        set: the learned thread ids of that channel (for turning learning off)
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from dataclasses import dataclass

import redis

from ragcord.knowledge.chunking import chunk_id, chunk_markdown, content_hash
from ragcord.knowledge.embedders import Embedder
from ragcord.knowledge.stores import Store, StoredChunk
from ragcord.redisconn import reply_text

log = logging.getLogger(__name__)

__all__ = ["LearnedThreads", "SolvedThread", "anonymise", "thread_url"]

_USER_MENTION = re.compile(r"<@!?\d+>")
_ROLE_MENTION = re.compile(r"<@&\d+>")
_EVERYONE = re.compile(r"@(everyone|here)\b")


def thread_url(guild_id: int | str, thread_id: int | str) -> str:
    return f"https://discord.com/channels/{int(guild_id)}/{int(thread_id)}"


def anonymise(text: str) -> str:
    """No one is named or pinged in a learned source: mentions become "a member" / "the team"."""
    text = _USER_MENTION.sub("a member", text)
    text = _ROLE_MENTION.sub("the team", text)
    return _EVERYONE.sub(r"\1", text).strip()


@dataclass(frozen=True)
class SolvedThread:
    guild_id: int
    channel_id: int  # the forum (or text channel) the thread belongs to
    thread_id: int
    knowledge_base: str
    title: str
    question: str  # the starter message
    answer: str  # the answer that solved it
    answered_by: str  # "ragcord", "staff" or "a member": never a name
    question_message: int
    answer_message: int

    @property
    def url(self) -> str:
        return thread_url(self.guild_id, self.thread_id)

    def markdown(self) -> str:
        return (
            f"# {anonymise(self.title)}\n\n"
            f"A member asked: {anonymise(self.question)}\n\n"
            f"Answer ({self.answered_by}): {anonymise(self.answer)}"
        )


class LearnedThreads:
    def __init__(self, client: redis.Redis, *, prefix: str, store: Store, embedder: Embedder) -> None:
        self.redis = client
        self.prefix = prefix
        self.store = store
        self.embedder = embedder

    def _key(self, thread_id: int | str) -> str:
        return f"{self.prefix}:learned:{int(thread_id)}"

    def _channel_key(self, guild_id: int | str, channel_id: int | str) -> str:
        return f"{self.prefix}:learned:{int(guild_id)}:{int(channel_id)}"

    def learn(self, solved: SolvedThread) -> int:
        """Index the thread as a page of its knowledge base (replacing an earlier version); returns chunks."""
        url = solved.url
        chunks = chunk_markdown(solved.markdown())
        vectors = self.embedder.embed([c.text for c in chunks]) if chunks else []
        now = time.time()
        digest = content_hash(solved.markdown())
        stored = [
            StoredChunk(
                id=chunk_id(url, c.index),
                url=url,
                title=anonymise(solved.title) or "Solved thread",
                heading=c.heading,
                chunk_index=c.index,
                text=c.text,
                content_hash=digest,
                indexed_at=now,
                vector=list(vector),
                anchor=c.anchor,
            )
            for c, vector in zip(chunks, vectors, strict=True)
        ]
        self.store.replace_page(solved.knowledge_base, url, stored)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            self._key(solved.thread_id),
            mapping={
                "guild": solved.guild_id,
                "channel": solved.channel_id,
                "knowledge_base": solved.knowledge_base,
                "title": solved.title,
                "question": solved.question,
                "answer": solved.answer,
                "answered_by": solved.answered_by,
                "question_message": solved.question_message,
                "answer_message": solved.answer_message,
            },
        )
        pipe.sadd(self._channel_key(solved.guild_id, solved.channel_id), str(solved.thread_id))
        pipe.execute()
        log.info("learned solved thread %s into %s (%d chunks)", url, solved.knowledge_base, len(stored))
        return len(stored)

    def get(self, thread_id: int | str) -> SolvedThread | None:
        raw = {reply_text(k): reply_text(v) for k, v in self.redis.hgetall(self._key(thread_id)).items()}
        if not raw:
            return None
        return SolvedThread(
            guild_id=int(raw["guild"]),
            channel_id=int(raw["channel"]),
            thread_id=int(thread_id),
            knowledge_base=raw["knowledge_base"],
            title=raw["title"],
            question=raw["question"],
            answer=raw["answer"],
            answered_by=raw["answered_by"],
            question_message=int(raw["question_message"]),
            answer_message=int(raw["answer_message"]),
        )

    def message_edited(self, thread_id: int | str, message_id: int, content: str) -> bool:
        """Re-index when the question or the answer of a learned thread changed; True when it did."""
        solved = self.get(thread_id)
        if solved is None:
            return False
        if message_id == solved.question_message:
            solved = dataclasses.replace(solved, question=content)
        elif message_id == solved.answer_message:
            solved = dataclasses.replace(solved, answer=content)
        else:
            return False
        self.learn(solved)
        return True

    def title_changed(self, thread_id: int | str, title: str) -> bool:
        """Re-index a learned thread whose title changed; True when it did."""
        solved = self.get(thread_id)
        if solved is None or solved.title == title:
            return False
        self.learn(dataclasses.replace(solved, title=title))
        return True

    def message_deleted(self, thread_id: int | str, message_id: int) -> bool:
        """Forget the thread when its question or its answer is deleted; True when it did."""
        solved = self.get(thread_id)
        if solved is None or message_id not in (solved.question_message, solved.answer_message):
            return False
        return self.forget(thread_id)

    def forget(self, thread_id: int | str) -> bool:
        """Remove the learned thread from its knowledge base; False when it was not learned."""
        solved = self.get(thread_id)
        if solved is None:
            return False
        self.store.delete_source(solved.knowledge_base, solved.url)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._key(thread_id))
        pipe.srem(self._channel_key(solved.guild_id, solved.channel_id), str(int(thread_id)))
        pipe.execute()
        log.info("forgot learned thread %s", solved.url)
        return True

    def forget_channel(self, guild_id: int | str, channel_id: int | str) -> int:
        """Learning turned off in a channel: every thread learned there leaves the knowledge base."""
        members = self.redis.smembers(self._channel_key(guild_id, channel_id))
        removed = sum(self.forget(reply_text(m)) for m in members)
        self.redis.delete(self._channel_key(guild_id, channel_id))
        return removed
