"""Prometheus metrics of ragcord's processes (prometheus-client's default registry, per process).

Jobs and page counts are read from Redis when scraped, so every worker's work shows up in one place
without a shared exporter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ragcord.jobs import JobState, JobStore

log = logging.getLogger(__name__)

RPC_REQUESTS = Counter("ragcord_rpc_requests_total", "Admin API calls", ["method", "code"])
RPC_LATENCY = Histogram(
    "ragcord_rpc_latency_seconds",
    "Admin API call latency",
    ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ANSWER_LATENCY = Histogram(
    "ragcord_answer_latency_seconds",
    "Time to a complete answer",
    ["via"],
    buckets=(0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60),
)
DISCORD_COMMANDS = Counter("ragcord_discord_commands_total", "Discord slash commands served", ["command"])


class JobsCollector:
    """Jobs by state and pages/chunks indexed, summed over the most recent `window` jobs."""

    def __init__(self, jobs: JobStore, *, window: int = 1000) -> None:
        self.jobs = jobs
        self.window = window

    def collect(self) -> Iterator[Metric]:
        states = GaugeMetricFamily("ragcord_jobs", "Crawl jobs by state (most recent jobs)", labels=["state"])
        pages = CounterMetricFamily("ragcord_pages", "Pages finished by crawl jobs", labels=["outcome"])
        chunks = CounterMetricFamily("ragcord_chunks_indexed", "Chunks indexed by crawl jobs")
        try:
            recent, _ = self.jobs.list(page_size=self.window)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because Redis blinked
            log.warning("metrics: cannot read jobs: %r", exc)
            return
        by_state = dict.fromkeys(JobState, 0)
        totals = {"indexed": 0, "skipped": 0, "failed": 0}
        chunk_total = 0
        for job in recent:
            by_state[job.state] += 1
            totals["indexed"] += job.pages_done
            totals["skipped"] += job.pages_skipped
            totals["failed"] += job.pages_failed
            chunk_total += job.chunks_indexed
        for state, count in by_state.items():
            states.add_metric([state.value.lower()], count)
        for outcome, count in totals.items():
            pages.add_metric([outcome], count)
        chunks.add_metric([], chunk_total)
        yield states
        yield pages
        yield chunks


def serve_metrics(address: str, jobs: JobStore | None = None) -> int | None:
    """Expose /metrics on `address` ("host:port"; "" = off); returns the port it listens on."""
    if not address:
        return None
    host, _, port = address.rpartition(":")
    try:
        server, _thread = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1")
    except OSError as exc:
        log.error("metrics disabled: cannot listen on %s (%s); set RAGCORD_METRICS_ADDRESS", address, exc)
        return None
    if jobs is not None:
        REGISTRY.register(JobsCollector(jobs))
    bound = server.server_address[1]
    log.info("metrics on http://%s:%s/metrics", host or "127.0.0.1", bound)
    return bound
