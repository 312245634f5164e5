"""Dramatiq actors: each translates a message into a call on the core and back. No logic here.

Senders (the API, the bot) declare the same actors without a crawler, so this module must not import
the crawler: `workers.entry` passes it in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import dramatiq
from dramatiq.middleware import CurrentMessage

from ragcord.settings import Settings

CRAWL_QUEUE = "crawl"


class PageHandler(Protocol):
    """What the `crawl_page` actor calls in a worker (`workers.pipeline.PageCrawler`)."""

    def crawl_page(self, job_id: str, url: str, depth: int, *, final_attempt: bool = True) -> None: ...


@dataclass
class CrawlActors:
    crawl_page: dramatiq.Actor[[str, str, int], None]

    def enqueue_page(self, job_id: str, url: str, depth: int) -> None:
        """An `Enqueue`: one message per page, picked up by any worker."""
        self.crawl_page.send(job_id, url, depth)


def declare_actors(
    broker: dramatiq.Broker, settings: Settings, crawler: Callable[[], PageHandler] | None = None
) -> CrawlActors:
    """Register the actors on `broker`. Only a worker passes `crawler` (built lazily, once per process)."""

    def crawl_page(job_id: str, url: str, depth: int) -> None:
        if crawler is None:
            raise RuntimeError("this process only enqueues; run `ragcord worker` to process pages")
        message = CurrentMessage.get_current_message()
        retries = message.options.get("retries", 0) if message is not None else settings.page_retries
        crawler().crawl_page(job_id, url, depth, final_attempt=retries >= settings.page_retries)

    actor = dramatiq.Actor(
        crawl_page,
        broker=broker,
        actor_name="crawl_page",
        queue_name=CRAWL_QUEUE,
        priority=0,
        options={
            "max_retries": settings.page_retries,
            "min_backoff": settings.retry_backoff_ms,
            "max_backoff": max(settings.retry_backoff_ms * 8, 1),
            "time_limit": 300_000,
        },
    )
    return CrawlActors(crawl_page=actor)
