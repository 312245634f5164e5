"""Politeness towards the sites a crawl reads, shared by every worker process on every host through Redis.

Per site (origin: scheme, host and port) at most `limit` requests are in flight at once, request starts are
spaced by the robots.txt Crawl-delay, and a 429 or 503 with Retry-After closes the site for that long. A slot
is a lease (`ragcord/lua/politeness/acquire.lua`) that a thread of the worker renews while the request runs:
a worker killed while holding one frees it within `lease_ms`.

Keys (P = settings.key_prefix, O = the origin, e.g. `https://docs.example.com`):
  P:site:{O}:leases  sorted set: lease (`token@taken_at`) -> expiry (ms, Redis server clock)
  P:site:{O}:gate    hash: `next` (ms before which no request may start), `delay` (Crawl-delay, ms),
                     `avg` (mean request time, ms)
  P:site:{O}:waiters sorted set: pages told to come back when every slot was busy -> when they are due (ms)
The braces make the origin the keys' hash tag: one Redis Cluster slot per site, so each script runs there.
(Before, `P:site:O:...`: leases live seconds, so an upgrade only forgets the gates and leases in flight.)
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import redis

from ragcord.lua import script_source

__all__ = ["Lease", "SiteLimiter", "origin_of"]

log = logging.getLogger(__name__)

GATE_KEEP_MS = 3_600_000  # a site's Crawl-delay and back-off are remembered an hour after its last request
LONGEST_AWAY_MS = 60_000  # a page put back because its site is busy comes back within a minute
LEASE_MS = 15_000  # a dead worker's slot is free again after this; a live one renews its slots every third


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class Lease:
    """A request slot of one site, held until `SiteLimiter.release`."""

    origin: str
    token: str  # the member of the site's leases: `token@taken_at_ms`


@dataclass(frozen=True)
class Denied:
    """No slot now: `wait_ms` until the site's gate opens, or None when every slot is busy; then the page
    should come back in `back_ms` (its place among the site's waiters, at the site's pace)."""

    wait_ms: int | None
    back_ms: int = 0


class SiteLimiter:
    """Request slots per site across every worker: `try_acquire`, then `release` when the request is done."""

    def __init__(
        self, client: redis.Redis, *, prefix: str, lease_ms: int = LEASE_MS, keep_alive: bool = True
    ) -> None:
        """`keep_alive=False` never renews: tests stand for a worker that died holding its slots."""
        self.redis = client
        self.prefix = prefix
        self.lease_ms = lease_ms
        self.keep_alive = keep_alive
        self._acquire = client.register_script(script_source("ragcord.lua", "politeness/acquire.lua"))
        self._release = client.register_script(script_source("ragcord.lua", "politeness/release.lua"))
        self._renew = client.register_script(script_source("ragcord.lua", "politeness/renew.lua"))
        self._held: dict[str, str] = {}  # lease -> origin, for the keeper
        self._lock = threading.Lock()
        self._keeper: threading.Thread | None = None

    def _keys(self, origin: str) -> list[str]:
        site = f"{self.prefix}:site:{{{origin}}}"
        return [f"{site}:leases", f"{site}:gate", f"{site}:waiters"]

    def try_acquire(
        self, origin: str, *, limit: int, delay_ms: int | None = None, waiter: str = ""
    ) -> Lease | Denied:
        """A slot of `origin` if one is free and its gate open; `delay_ms` is its Crawl-delay if known.

        `waiter` names the page (job and url), so its place among the site's waiters is kept.
        """
        token = uuid.uuid4().hex
        taken, wait, back, *held = cast(
            "list[Any]",
            self._acquire(
                keys=self._keys(origin),
                args=[
                    token,
                    limit,
                    self.lease_ms,
                    -1 if delay_ms is None else delay_ms,
                    GATE_KEEP_MS,
                    waiter or token,
                    LONGEST_AWAY_MS,
                ],
            ),
        )
        if taken:
            lease = Lease(origin, held[0].decode() if isinstance(held[0], bytes) else str(held[0]))
            self._hold(lease)
            return lease
        return Denied(None, int(back)) if wait < 0 else Denied(int(wait))

    def release(self, lease: Lease, *, backoff_ms: int = 0, delay_ms: int | None = None) -> int:
        """Free the slot; `backoff_ms` closes the site that long, `delay_ms` is a Crawl-delay just learned.

        Returns the ms until the site's gate opens.
        """
        with self._lock:
            self._held.pop(lease.token, None)
        delay = -1 if delay_ms is None else delay_ms
        return int(
            cast(
                "int",
                self._release(
                    keys=self._keys(lease.origin)[:2],
                    args=[lease.token, backoff_ms, delay, GATE_KEEP_MS],
                ),
            )
        )

    def in_flight(self, origin: str) -> int:
        """Leases held now (expired ones count until the next acquire drops them): for tests, metrics."""
        return int(self.redis.zcard(self._keys(origin)[0]))

    def renew_held(self) -> int:
        """Extend every lease this limiter holds; returns how many were still held."""
        with self._lock:
            by_origin: dict[str, list[str]] = defaultdict(list)
            for token, origin in self._held.items():
                by_origin[origin].append(token)
        kept = 0
        for origin, tokens in by_origin.items():
            kept += int(cast("int", self._renew(keys=self._keys(origin)[:1], args=[self.lease_ms, *tokens])))
        return kept

    def _hold(self, lease: Lease) -> None:
        with self._lock:
            self._held[lease.token] = lease.origin
            if self.keep_alive and self._keeper is None:
                self._keeper = threading.Thread(target=self._keep, name="site-lease-keeper", daemon=True)
                self._keeper.start()

    def _keep(self) -> None:
        """Renew held leases every third of their duration, for the life of the process."""
        while True:
            threading.Event().wait(self.lease_ms / 3000)
            try:
                self.renew_held()
            except redis.RedisError as exc:  # tried again next round; a lease lost meanwhile frees a slot
                log.warning("could not renew site leases: %s", exc)
