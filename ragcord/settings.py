"""All configuration, read once per entry point from the environment (prefix RAGCORD_) and `.env`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The URL settings: the schemes each accepts, and an example for the message that refuses another.
URL_SCHEMES: dict[str, tuple[tuple[str, ...], str]] = {
    "redis_url": (("redis", "rediss", "unix"), "redis://127.0.0.1:6379/0"),
    "broker_url": (("amqp", "amqps", "redis", "rediss", "unix"), "amqp://user:password@host:5672/vhost"),
    "weaviate_url": (("http", "https"), "http://127.0.0.1:8080"),
    "openai_base_url": (("http", "https"), "http://127.0.0.1:11434/v1"),
    "discord_api_base_url": (("http", "https"), "https://discord.com/api/v10"),
    "discord_gateway_url": (("ws", "wss"), "wss://gateway.discord.gg"),
}
# Where each address setting listens by default: the example its message gives.
ADDRESS_EXAMPLES = {"grpc_address": "127.0.0.1:50051", "metrics_address": "127.0.0.1:9464"}


def split_host_port(address: str) -> tuple[str, int] | None:
    """`host:port` (an IPv6 host in brackets: `[::1]:50051`) as (host, port); None when it is not one."""
    host, colon, port = address.rpartition(":")
    if not colon or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        return None
    if any(c.isspace() or c in "/@" for c in host):
        return None
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        return None
    return host.strip("[]"), int(port)


def _url_problem(url: str, schemes: tuple[str, ...]) -> bool:
    """Whether `url` is not a URL of one of `schemes` (web ones need a host); never says the value."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return True
    if parts.scheme not in schemes:
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and not parts.hostname


class Settings(BaseSettings):
    """Every setting ragcord reads. Build it in an entry point and pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="RAGCORD_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    # How long a request (an RPC, a bot command) waits for Redis to answer again before it fails UNAVAILABLE,
    # and how long a worker mid-page waits out a Redis restart (ragcord/redisconn.py).
    redis_retry_seconds: float = Field(1.0, ge=0)
    worker_redis_retry_seconds: float = Field(30.0, ge=0)
    data_dir: Path = Path(".ragcord")
    grpc_address: str = "127.0.0.1:50051"
    admin_token: SecretStr | None = None
    allow_private_networks: bool = False

    default_knowledge_base: str = "default"

    # sqlite: embedded, nothing to install (docs/bench/store.md: at 100k chunks exact vector search p50
    # 3.6 ms, recall@10 1.0; LanceDB 10 ms at recall 0.33, 350 MB more install, ~130 MB more per process).
    # lancedb needs the `lancedb` extra; weaviate is for production.
    store: Literal["sqlite", "lancedb", "weaviate"] = "sqlite"
    weaviate_url: str = "http://127.0.0.1:8080"
    weaviate_grpc_port: int = Field(50051, ge=1, le=65535)
    weaviate_api_key: SecretStr | None = None
    # One collection holds every knowledge base, one tenant each.
    weaviate_collection: str = Field("RagcordChunk", pattern=r"^[A-Z][_0-9A-Za-z]{0,230}$")
    embedder: Literal["local", "openai", "none"] = "local"
    embed_batch_size: int = Field(32, ge=1, le=2048)
    # Threads of one local embedding call (0: onnxruntime's choice, one per core). Worker threads share them.
    embed_threads: int = Field(0, ge=0, le=256)
    # Fold the int8 weights into floats once at load instead of in every call: a short query's embedding in
    # a third of the CPU, a batch's unchanged; +65 MB from load until the first call, less after it
    # (LocalEmbedder.fold_weights). false: the smallest process that loaded the model and has not used it.
    embed_fold_weights: bool = True
    # Another ONNX export of all-MiniLM-L6-v2 (same inputs and output) instead of the packaged int8 file.
    local_model_path: Path | None = None
    # A process whose local embedder has not been called for this long drops it and gives its ~225 MB
    # back (bench/footprint.py: a worker after a crawl); the next call reloads it in 0.2-0.4 s. 0: never.
    embed_idle_unload_seconds: float = Field(60.0, ge=0)
    # Threads of one numpy BLAS call (the SQLite store's exact vector search) in each process; 0: OpenBLAS's
    # own choice (one per core). One: its idle threads spin after each call and took the cores from the
    # keyword search and the model beside them (ragcord/blas.py; bench.ask at 100k: p50 0.75x).
    blas_threads: int = Field(1, ge=0, le=256)

    # Answering.
    answerer: Literal["extractive", "openai"] = "extractive"
    chat_model: str = "gpt-4o-mini"
    top_k: int = Field(5, ge=1, le=20, description="passages an answer draws on")
    search_alpha: float = Field(0.5, ge=0, le=1, description="0 = keyword only, 1 = vector only")
    search_fusion: Literal["relative", "rrf"] = "relative"
    # The search's learned second stage (ragcord/knowledge/rerank.py). Off: it gained on the tuned sites left
    # out one at a time and on the held-out set, and lost on the four never-tuned sites (docs/quality-log.md,
    # session 10).
    search_rerank: bool = False
    # Below both, the extractive answerer says it found nothing instead of guessing.
    min_similarity: float = Field(0.35, ge=-1, le=1, description="cosine similarity of the best passage")
    min_term_coverage: float = Field(0.6, ge=0, le=1, description="share of the question's terms found")
    memory_ttl_days: float = Field(30, gt=0)
    memory_token_budget: int = Field(1500, ge=50)
    # Questions asked and their outcomes (ListUnanswered, GetQuestionStats, `ragcord report`): kept this long;
    # user ids are hashed with this salt (unset: one generated at first use and kept in Redis).
    question_retention_days: float = Field(90, gt=0)
    question_salt: SecretStr | None = None
    openai_timeout_seconds: float = Field(60.0, gt=0)
    openai_max_retries: int = Field(3, ge=0, le=10)

    # Keys in Redis start with this, so several deployments (or tests) can share one server.
    key_prefix: str = "ragcord"
    event_retention: int = Field(10_000, ge=10, description="events kept per job's stream")
    # An ended job's record and events are kept this long, then expire together (fractions allowed: tests).
    job_retention_days: float = Field(30, gt=0, description="days an ended job stays in GetJob/ListJobs")
    # -- knowledge base schedules (issue 22) --
    # The shortest interval SetSchedule accepts (re-crawling a site more often than hourly is rarely polite);
    # tests lower it to seconds.
    schedule_min_seconds: int = Field(3600, ge=1, description="shortest schedule SetSchedule accepts")
    # How often each worker process's scheduler looks for due schedules.
    schedule_poll_seconds: float = Field(5.0, gt=0, description="seconds between a scheduler's looks")
    # How often the bot looks for ended re-crawls to summarise in the servers' /kb updates channels.
    updates_poll_seconds: float = Field(15.0, gt=0, description="seconds between the bot's looks")
    # -- end of knowledge base schedules --
    watch_heartbeat_seconds: float = Field(5.0, gt=0)
    # WatchJob: one Redis reader per job per process fans events out to every watcher of the job.
    watch_max_streams: int = Field(5000, ge=1, description="WatchJob streams one process serves at once")
    # (Named for the per-watcher queues it once sized; the window is shared by every watcher of a job.)
    watch_queue_events: int = Field(
        1024, ge=1, description="latest events of each watched job kept in memory; older ones: from Redis"
    )
    # Threads per kind of work, so slow model calls never starve the Redis and store calls.
    answer_threads: int = Field(8, ge=1, description="threads answering questions (model calls)")
    io_threads: int = Field(16, ge=1, description="threads for Redis and store calls of the async adapters")

    # Crawler.
    user_agent: str = "ragcord/0.1 (+https://github.com/ragcord/ragcord; documentation indexer)"
    fetch_timeout_seconds: float = Field(15.0, gt=0)
    max_page_bytes: int = Field(5_000_000, ge=1024)
    max_redirects: int = Field(5, ge=0, le=20)
    chunk_words: int = Field(180, ge=20, le=1000, description="chunk size when the embedder has no window")
    chunk_tokens: int = Field(
        230, ge=48, le=8192, description="chunk size in the embedder's tokens, within its window"
    )
    page_retries: int = Field(3, ge=0, le=10, description="retries of a page after a transient error")
    retry_backoff_ms: int = Field(1000, ge=0)
    # A page's whole fetch (redirects included) ends by then, however slowly the server trickles its bytes.
    page_deadline_seconds: float = Field(60.0, gt=0)
    max_links_per_page: int = Field(10_000, ge=1, description="links of one page considered for the crawl")
    # Other formats a docs site links to (workers/extraction/formats.py): PDFs are often larger than pages,
    # and reading them, or Markdown (markdown-it-py reads ~130 KB/s), costs CPU time a page's bytes do not.
    max_pdf_bytes: int = Field(20_000_000, ge=1024, description="a larger PDF is skipped unread")
    max_pdf_pages: int = Field(500, ge=1, description="pages of a PDF read; the rest are left out")
    max_markup_bytes: int = Field(
        1_000_000, ge=1024, description="Markdown/RST read; the rest of a longer file is left out"
    )
    max_text_chars: int = Field(
        2_000_000, ge=1000, description="text kept from one PDF, Markdown, RST or text file"
    )
    max_extract_seconds: float = Field(
        20.0, gt=0, description="reading a PDF or Markdown file stops then; what was read is kept"
    )
    # Politeness, shared by every worker process on every host through Redis (workers/politeness.py).
    max_concurrent_requests: int = Field(
        2, ge=1, le=32, description="requests in flight to one site at once (StartCrawl's default)"
    )
    max_crawl_delay_seconds: float = Field(30.0, ge=0, description="a longer robots.txt Crawl-delay is cut")
    max_retry_after_seconds: float = Field(600.0, ge=0, description="a longer Retry-After is cut")
    # A worker waits up to this long for a site's gate to open (Crawl-delay, Retry-After); longer, or when
    # every slot of the site stays busy for site_busy_wait_seconds, it puts the page back with a delay and
    # takes another message. A fast site frees a slot within milliseconds, and a page put back costs a trip
    # through the queue (Python's docs on loopback, 1 x 4 threads, 2 slots: 646 messages for 528 pages
    # without it, 530 with it).
    site_wait_seconds: float = Field(1.0, ge=0)
    site_busy_wait_seconds: float = Field(0.05, ge=0)
    # Pages rendered by JavaScript (workers/render.py): a headless Chromium, one per worker process, started
    # on the first page that needs it. Its requests go through the crawler's fetcher, guard and caps.
    chromium_path: str = Field("", description="Chromium's executable; empty: `chromium` (Debian) on PATH")
    # Chromium refuses its sandbox as root, and containers without user namespaces cannot give it one; the
    # interception of every request still holds without it, but a renderer exploit would not be contained.
    chromium_no_sandbox: bool = Field(False, description="run Chromium without its sandbox (always as root)")
    render_deadline_seconds: float = Field(
        30.0, gt=0, description="a page's whole render; its DOM is taken at 3/4 of it if still loading"
    )
    render_max_requests: int = Field(200, ge=1, description="requests one rendered page may make")
    render_max_bytes: int = Field(
        20_000_000, ge=1024, description="bytes one rendered page's requests may bring, all together"
    )
    render_min_text_chars: int = Field(
        200, ge=0, description="RENDER_AUTO renders a page with less main text that loads scripts"
    )

    # Workers.
    # One process whose threads share one model (its calls already use every core): bench/footprint.py
    # measured 594 MB at the peak of a crawl for the whole tree against 987 MB with 2 x 2, at equal pages/s
    # within the run's noise. Bigger hosts add processes (or hosts).
    worker_processes: int = Field(1, ge=1)
    worker_threads: int = Field(4, ge=1)
    # How much lower the workers' CPU priority is than the API's and the bot's (nice). On a small host they
    # share the cores: a crawl's embedding takes what the API leaves, and runs at full speed when it is
    # idle. Measured (`ragcord serve`, 2 cores, questions asked while Python's docs were crawled, 8 runs):
    # Ask p50 13-16 ms at 10 against 16-20 ms at 0, pair by pair; WatchJob latency unchanged (its cost is
    # gRPC's per message, docs/benchmarks.md). 0: the same priority.
    worker_nice: int = Field(10, ge=0, le=19)
    # Dramatiq's Redis broker hands a dead worker's unacknowledged messages to others after this.
    worker_heartbeat_timeout_ms: int = Field(60_000, ge=1000)
    # How many broker commands in a million also run its maintenance (requeue of dead workers' messages).
    broker_maintenance_chance: int = Field(1000, ge=1, le=1_000_000)
    # And each worker process runs it on each queue at least this often, so a redelivery waits at most
    # worker_heartbeat_timeout_ms plus this, not for a lucky draw.
    broker_maintenance_seconds: float = Field(10.0, gt=0)
    # "amqp://user:password@host:5672/vhost" carries the crawl queue on RabbitMQ (jobs stay in Redis);
    # unset: Dramatiq's Redis broker on redis_url.
    broker_url: str | None = None
    # Idle consumers poll this often (Dramatiq's default of 1 s delays the first message after idle).
    worker_idle_timeout_ms: int = Field(100, ge=10)
    # Benchmarks: each worker process writes where its pages' time goes here (workers/stagetimes.py).
    stage_times_dir: Path | None = None
    # On stop (Ctrl-C, SIGTERM) workers finish the pages they are on for up to this long, then are killed.
    worker_stop_seconds: float = Field(30.0, gt=0)

    # Discord bot.
    # NoDecode: the value is read by _guild_ids below, so one id or "1, 2" work as well as JSON.
    discord_guild_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, description="sync commands to these guilds at start (development); else global"
    )
    discord_api_base_url: str | None = Field(None, description="REST base, e.g. a rate-limit proxy")
    discord_gateway_url: str | None = None
    discord_shards: int | None = Field(None, ge=1, description="set to shard (AutoShardedBot); None = one")
    ask_rate_limit: int = Field(5, ge=1, description="questions one user may ask per window")
    ask_rate_window_seconds: float = Field(60.0, gt=0)
    stream_edit_seconds: float = Field(1.2, gt=0, description="at most one message edit this often")

    # Prometheus: /metrics of the admin API (and of the bot, in its own process); "" turns it off.
    metrics_address: str = "127.0.0.1:9464"
    # Dramatiq's own exporter in each `ragcord worker` (its master process); 0 turns it off.
    worker_metrics_port: int = Field(9191, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"

    log_level: str = "INFO"
    log_json: bool = False

    # Keep their usual names, as other tools read them too.
    discord_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("DISCORD_TOKEN", "RAGCORD_DISCORD_TOKEN")
    )
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("OPENAI_API_KEY", "RAGCORD_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_BASE_URL", "RAGCORD_OPENAI_BASE_URL")
    )
    embedding_model: str = "text-embedding-3-small"
    embedding_dim: int = Field(1536, ge=1, description="vector size of embedding_model (openai embedder)")

    @field_validator(
        "admin_token",
        "discord_token",
        "openai_api_key",
        "openai_base_url",
        "weaviate_api_key",
        "broker_url",
        "discord_api_base_url",
        "discord_gateway_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`DISCORD_TOKEN=` in a .env file means not set, not an empty token."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("discord_guild_ids", mode="before")
    @classmethod
    def _guild_ids(cls, value: object) -> object:
        """`123`, `123,456` or `[123, 456]`: guild ids the way people write them."""
        if isinstance(value, int):
            return [value]
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        """`info` or `INFO`; anything else fails here, not as a traceback from logging at start."""
        level = value.strip().upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError(f"not a log level: use one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("grpc_address", "metrics_address")
    @classmethod
    def _host_and_port(cls, value: str, info: ValidationInfo) -> str:
        address = value.strip()
        if info.field_name == "metrics_address" and not address:
            return ""  # /metrics off
        if split_host_port(address) is None:
            example = ADDRESS_EXAMPLES[str(info.field_name)]
            off = ", or empty to turn /metrics off" if info.field_name == "metrics_address" else ""
            raise ValueError(
                f"must be host:port with a port from 0 to 65535 (IPv6 in brackets), e.g. {example}{off}"
            )
        return address

    @field_validator(*URL_SCHEMES)
    @classmethod
    def _url_of_known_scheme(cls, value: str | None, info: ValidationInfo) -> str | None:
        schemes, example = URL_SCHEMES[str(info.field_name)]
        if value is not None and _url_problem(value.strip(), schemes):
            named = [f"{scheme}://" for scheme in schemes]
            raise ValueError(f"must be a URL starting {', '.join(named[:-1])} or {named[-1]}, e.g. {example}")
        return value.strip() if value is not None else None

    @field_validator("key_prefix")
    @classmethod
    def _prefix_has_no_colon(cls, value: str) -> str:
        if not value or ":" in value:
            raise ValueError("key_prefix must be non-empty and contain no ':'")
        return value

    @property
    def lancedb_dir(self) -> Path:
        return self.data_dir / "lancedb"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "ragcord.sqlite3"

    @property
    def job_retention_seconds(self) -> float:
        return self.job_retention_days * 86400

    @property
    def grpc_host(self) -> str:
        host, _, _ = self.grpc_address.rpartition(":")
        return host.strip("[]")
