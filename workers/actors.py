"""Dramatiq actors: each translates a message into a call on the core and back. No logic here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dramatiq
from dramatiq.middleware import CurrentMessage

from ragcord.settings import Settings
from workers.pipeline import PageCrawler

CRAWL_QUEUE = "crawl"


@dataclass
class CrawlActors:
    crawl_page: dramatiq.Actor

    def enqueue_page(self, job_id: str, url: str, depth: int) -> None:
        self.crawl_page.send(job_id, url, depth)


def declare_actors(
    broker: dramatiq.Broker, settings: Settings, crawler: Callable[[], PageCrawler] | None = None
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
