"""Prometheus metrics of ragcord's processes (prometheus-client's default registry, per process).

Jobs and page counts are read from Redis when scraped, so every worker's work shows up in one place
without a shared exporter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ragcord.jobs import JobState, JobStore, PageOutcome

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
    """Crawl figures read from Redis at each scrape: counters kept by JobStore, gauges of now.

    The counters are monotonic (Redis HINCRBY beside the job scripts that count a job's pages), so they
    never go down when old jobs expire; the gauges cost one read per active job, not per job ever run."""

    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs

    def collect(self) -> Iterator[Metric]:
        try:
            counts = self.jobs.counters()
            active = self.jobs.active()
            retained = self.jobs.retained()
            loading = self.jobs.workers_loading()
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because Redis blinked
            log.warning("metrics: cannot read jobs: %r", exc)
            return
        pages = CounterMetricFamily("ragcord_pages", "Pages finished by crawl jobs", labels=["outcome"])
        for outcome in PageOutcome:
            pages.add_metric([outcome.value], counts.get(f"pages_{outcome.value}", 0))
        chunks = CounterMetricFamily("ragcord_chunks_indexed", "Chunks indexed by crawl jobs")
        chunks.add_metric([], counts.get("chunks_indexed", 0))
        beyond = CounterMetricFamily(
            "ragcord_pages_beyond_max_pages", "Distinct links crawl jobs left because max_pages was reached"
        )
        beyond.add_metric([], counts.get("pages_beyond_max_pages", 0))
        created = CounterMetricFamily("ragcord_jobs_created", "Crawl jobs started")
        created.add_metric([], counts.get("jobs_created", 0))
        finished = CounterMetricFamily(
            "ragcord_jobs_finished", "Crawl jobs ended, by final state", labels=["state"]
        )
        for state in JobState:
            if state.terminal:
                finished.add_metric([state.value.lower()], counts.get(f"jobs_{state.value.lower()}", 0))
        states = GaugeMetricFamily("ragcord_jobs", "Crawl jobs running now, by state", labels=["state"])
        for state in (JobState.QUEUED, JobState.RUNNING):
            states.add_metric([state.value.lower()], sum(job.state is state for job in active))
        outstanding = GaugeMetricFamily(
            "ragcord_pages_outstanding",
            "Pages reserved by running jobs and not finished yet (queued or in work)",
        )
        outstanding.add_metric([], sum(job.outstanding for job in active))
        kept = GaugeMetricFamily(
            "ragcord_jobs_retained", "Jobs ListJobs can show (running, or ended recently)"
        )
        kept.add_metric([], retained)
        workers = GaugeMetricFamily("ragcord_workers_loading_model", "Workers loading the embedding model")
        workers.add_metric([], loading)
        yield from (pages, chunks, beyond, created, finished, states, outstanding, kept, workers)


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
