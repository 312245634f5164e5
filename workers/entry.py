"""The module the Dramatiq CLI loads in every worker process: the worker's composition root.

Run through `ragcord worker` (or `ragcord serve`), which sets the environment Dramatiq reads.
"""

from __future__ import annotations

import os
import socket
import threading

import dramatiq

from ragcord.bootstrap import bootstrap
from ragcord.logs import configure_logging
from ragcord.redisconn import redis_client
from ragcord.settings import Settings
from workers.actors import declare_actors
from workers.broker import build_broker
from workers.pipeline import PageCrawler, build_page_crawler
from workers.schedules import SchedulerMiddleware
from workers.stagetimes import StageTimes, StageTimesMiddleware

settings = Settings()
configure_logging(settings)
broker = build_broker(settings)
if settings.worker_metrics_port:
    from dramatiq.middleware.prometheus import Prometheus

    broker.add_middleware(Prometheus())  # exposes every worker process's counters from the master
dramatiq.set_broker(broker)
# Off unless RAGCORD_STAGE_TIMES_DIR is set (benchmarks): then every page's stages are timed.
_times = StageTimes(settings.stage_times_dir) if settings.stage_times_dir else None
if _times is not None:
    broker.add_middleware(StageTimesMiddleware(_times))
    _times.count_redis_commands(getattr(broker, "client", None))

_crawler: PageCrawler | None = None
_lock = threading.Lock()


def _get_crawler() -> PageCrawler:
    global _crawler
    with _lock:
        if _crawler is None:
            # A page in progress waits out a Redis restart instead of failing (ragcord/redisconn.py).
            patient = redis_client(settings.redis_url, retry_seconds=settings.worker_redis_retry_seconds)
            if _times is not None:
                _times.count_redis_commands(patient)
            services = bootstrap(settings, redis_client=patient)
            _crawler = build_page_crawler(services, actors.enqueue_page, times=_times)
        return _crawler


class LoadAtBoot(dramatiq.Middleware):
    """Each worker process builds its crawler and loads the embedder before it takes a message."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        crawler = _get_crawler()
        # Said in Redis while it lasts, so `ragcord crawl` can tell why the first pages wait.
        with crawler.jobs.loading_model(f"{socket.gethostname()}-{os.getpid()}"):
            crawler.embedder.load()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if _crawler is not None and _crawler.rendering is not None:
            _crawler.rendering.close()  # the worker's headless browser, when one was started


broker.add_middleware(LoadAtBoot())
actors = declare_actors(broker, settings, _get_crawler)
# Re-crawl schedules fire from the worker side: one scheduler thread per worker process (issue 22).
broker.add_middleware(SchedulerMiddleware(settings, lambda: (_get_crawler().jobs, actors.enqueue_page)))
