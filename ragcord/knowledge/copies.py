"""Pages that copy other pages of the same crawl, found at chunk level.

Many generators publish a manual twice: once as section pages and once on one page (mdBook's print.html,
Sphinx's singlehtml, "all" or printable editions). Indexed twice, the copy's chunks compete with the real
pages and answers cite a 5 MB page instead of the section. Each crawl keeps, in Redis, which page first
published each chunk's text. A page whose chunks another page already published leaves them out; when the
page that published them first is a much larger page that repeats this one (the whole-manual edition was
crawled first), this page takes them back and they are removed from the copy. So the section page is the one
indexed whichever is crawled first.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from ragcord.jobs.keys import job_key
from ragcord.lua import script_source

# Chunks shorter than this are not compared: "Note", "Parameters", "Example" repeat across unrelated pages.
MIN_WORDS = 12
# A page that holds this many times the chunks of the page it repeats is treated as a whole-manual copy.
COPY_SIZE_RATIO = 2.0
_WORD = re.compile(r"\w+")
# A page's chunk texts are fingerprinted by `claim` and again by `lost` once the page is written: the second
# time from this cache (a page has tens of chunks; a whole-manual copy some thousands, which it keeps apart).
_FINGERPRINTS_CACHED = 4096


@functools.lru_cache(maxsize=_FINGERPRINTS_CACHED)
def fingerprint(text: str) -> str | None:
    """The same for texts that differ only in case, whitespace and punctuation; None for short texts."""
    words = _WORD.findall(text.lower())
    if len(words) < MIN_WORDS:
        return None
    return hashlib.blake2b(" ".join(words).encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class CopyVerdict:
    """What to index of one page, and what to remove from pages that copy it."""

    keep: list[int]  # positions (in the list given to `claim`) of the chunks to index
    left_out: int  # chunks left out because another page published them first
    copies: list[str]  # the pages this one repeats, most repeated first
    taken: dict[str, list[int]] = field(default_factory=dict)  # copy url -> its chunk indexes to remove

    @property
    def skip(self) -> bool:
        """Every compared chunk of the page is already indexed from other pages."""
        return not self.keep


class CopyIndex:
    """The chunk-owner index of each crawl, in Redis; its keys live `ttl_seconds` after the last page."""

    def __init__(self, client: redis.Redis, *, prefix: str, ttl_seconds: int = 7 * 86400) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self._claim = client.register_script(script_source("ragcord.lua", "copies/claim.lua"))
        self._take = client.register_script(script_source("ragcord.lua", "copies/take.lua"))

    def keys(self, job_id: str) -> list[str]:
        base = job_key(self.prefix, job_id)  # the job's hash tag: one cluster slot with the job's other keys
        return [f"{base}:chunk-owners", f"{base}:page-chunks"]

    def claim(self, job_id: str, url: str, texts: Sequence[str], indexes: Sequence[int]) -> CopyVerdict:
        """Claim the page's chunk texts (`indexes` are their chunk indexes) and say which to index."""
        prints = [fingerprint(text) for text in texts]
        compared = [(i, fp) for i, fp in enumerate(prints) if fp is not None]
        if not compared:
            return CopyVerdict(keep=list(range(len(texts))), left_out=0, copies=[])
        args: list[str | int] = [url, len(compared), self.ttl_seconds]
        for position, fp in compared:
            args += [fp, indexes[position]]
        raw = self._claim(keys=self.keys(job_id), args=args)
        repeated: dict[str, list[tuple[int, str]]] = {}  # owner url -> (position, fingerprint)
        sizes: dict[str, int] = {}
        for (position, fp), owner, size in zip(compared, raw[0::2], raw[1::2], strict=True):
            owner_text = owner.decode() if isinstance(owner, bytes) else str(owner)
            if owner_text:
                owner_url = owner_text.rpartition("\n")[0]
                repeated.setdefault(owner_url, []).append((position, fp))
                sizes[owner_url] = int(size)
        dropped: set[int] = set()
        taken: dict[str, list[int]] = {}
        for owner_url, shared in repeated.items():
            if self._copies_this_page(sizes[owner_url], len(compared), len(shared)):
                take_args: list[str | int] = [owner_url + "\n", url]
                for position, fp in shared:
                    take_args += [fp, indexes[position]]
                moved = [
                    m.decode() if isinstance(m, bytes) else str(m)
                    for m in self._take(keys=self.keys(job_id)[:1], args=take_args)
                ]
                taken[owner_url] = sorted(int(m) for m in moved if m)
                # A fingerprint another page took meanwhile stays out of this one.
                dropped.update(position for (position, _), m in zip(shared, moved, strict=True) if not m)
            else:
                dropped.update(position for position, _ in shared)
        keep = [i for i in range(len(texts)) if i not in dropped]
        if all(prints[i] is None for i in keep):
            keep = []  # only short leftovers ("Note", a lone heading line): the page adds nothing
        counts = Counter({owner: len(shared) for owner, shared in repeated.items() if owner not in taken})
        return CopyVerdict(
            keep=keep,
            left_out=len(texts) - len(keep),
            copies=[owner for owner, _ in counts.most_common()],
            taken={owner: indexes_ for owner, indexes_ in taken.items() if indexes_},
        )

    def lost(self, job_id: str, url: str, texts: Sequence[str], indexes: Sequence[int]) -> list[int]:
        """Chunk indexes of the page whose text another page took meanwhile: to remove once it is written.

        A section page may take its chunks from this one while it is still being embedded and written;
        its removal then finds nothing to remove, so the page written last checks for itself.
        """
        compared = [
            (index, fp) for index, text in zip(indexes, texts, strict=True) if (fp := fingerprint(text))
        ]
        if not compared:
            return []
        owners = self.client.hmget(self.keys(job_id)[0], [fp for _, fp in compared])
        mine = url + "\n"
        return [
            index
            for (index, _), owner in zip(compared, owners, strict=True)
            if owner is not None
            and not (owner.decode() if isinstance(owner, bytes) else str(owner)).startswith(mine)
        ]

    @staticmethod
    def _copies_this_page(owner_size: int, own_size: int, shared: int) -> bool:
        """The owner is a much larger page holding most of this one: a whole-manual edition of it."""
        return owner_size >= COPY_SIZE_RATIO * own_size and shared * 2 >= own_size
