"""The sending side of the crawl queue, for processes that start crawls but never crawl (API, bot).

It declares the same `crawl_page` actor as the workers, without a crawler, so importing it loads
Dramatiq and Redis only: not httpx, lxml, the extraction or the pipeline (tests/unit/test_import_seams.py).
"""

from __future__ import annotations

from ragcord.crawls import Enqueue
from ragcord.settings import Settings
from workers.actors import declare_actors
from workers.broker import build_broker


def build_enqueue(settings: Settings) -> Enqueue:
    """Send a crawl's pages to the workers through the Redis broker that settings name."""
    return declare_actors(build_broker(settings), settings).enqueue_page
