"""Each worker process runs one scheduler thread: every RAGCORD_SCHEDULE_POLL_SECONDS it fires the due
re-crawl schedules it claims (the logic, and why only one process gets each firing: ragcord/schedules.py).

Started after the process's crawler is built (Dramatiq's `after_worker_boot`), stopped before it shuts down.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import dramatiq

from ragcord.crawls import Enqueue
from ragcord.jobs import JobStore
from ragcord.schedules import Schedules, fire_due
from ragcord.settings import Settings

log = logging.getLogger(__name__)


class Scheduler:
    """The thread; `deps` builds (JobStore, enqueue) once, in the thread, when it first runs."""

    def __init__(self, settings: Settings, deps: Callable[[], tuple[JobStore, Enqueue]]) -> None:
        self.settings = settings
        self.deps = deps
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="ragcord-scheduler", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def _run(self) -> None:
        jobs, enqueue = self.deps()
        schedules = Schedules(jobs.redis, prefix=self.settings.key_prefix)
        while not self.stopping.wait(self.settings.schedule_poll_seconds):
            try:
                fire_due(self.settings, schedules, jobs, enqueue)
            except Exception:  # noqa: BLE001 - Redis away for a moment: the next look tries again
                log.exception("scheduler: firing due schedules failed; trying again")


class SchedulerMiddleware(dramatiq.Middleware):
    def __init__(self, settings: Settings, deps: Callable[[], tuple[JobStore, Enqueue]]) -> None:
        self.scheduler = Scheduler(settings, deps)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.scheduler.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.scheduler.stop()
