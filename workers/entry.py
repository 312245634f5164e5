"""The module the Dramatiq CLI loads in every worker process: the worker's composition root.

Run through `ragcord worker` (or `ragcord serve`), which sets the environment Dramatiq reads.
"""

from __future__ import annotations

import threading

import dramatiq

from ragcord.bootstrap import bootstrap
from ragcord.logs import configure_logging
from ragcord.settings import Settings
from workers.actors import declare_actors
from workers.broker import build_broker
from workers.crawler import Fetcher, RobotsCache
from workers.pipeline import PageCrawler

settings = Settings()
configure_logging(settings)
broker = build_broker(settings)
dramatiq.set_broker(broker)

_crawler: PageCrawler | None = None
_lock = threading.Lock()


def _get_crawler() -> PageCrawler:
    global _crawler
    with _lock:
        if _crawler is None:
            services = bootstrap(settings)
            fetcher = Fetcher(settings)
            _crawler = PageCrawler(
                settings,
                jobs=services.jobs,
                store=services.store,
                embedder=services.embedder,
                fetcher=fetcher,
                robots=RobotsCache(fetcher),
                enqueue=actors.enqueue_page,
            )
        return _crawler


actors = declare_actors(broker, settings, _get_crawler)
