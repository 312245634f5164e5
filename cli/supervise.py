"""The process commands: `serve` (API + workers + bot), `rpc`, `worker` and `bot`.

Each imports its adapter when it runs, so one command does not load the others' frameworks.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ragcord import malloc
from ragcord.errors import RagcordError
from ragcord.settings import Settings

if TYPE_CHECKING:
    from ragcord.bootstrap import Services

log = logging.getLogger(__name__)

# After the workers' own shutdown timeout (RAGCORD_WORKER_STOP_SECONDS), time for their processes to exit.
WORKERS_EXIT_MARGIN_SECONDS = 5
REDIS_STOP_SECONDS = 10


def worker_command(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "workers.entry",
        "--processes",
        str(settings.worker_processes),
        "--threads",
        str(settings.worker_threads),
        # How long a stopping worker process waits for its running actors before it exits anyway.
        "--worker-shutdown-timeout",
        str(int(settings.worker_stop_seconds * 1000)),
    ]


def worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    # Dramatiq reads this at import: how long an idle consumer sleeps between polls.
    env.setdefault("dramatiq_worker_timeout", str(settings.worker_idle_timeout_ms))
    # A process takes no more pages than it has threads (Dramatiq's default is twice as many): pages held
    # by a busy process while another's threads idle lengthen a crawl's tail by a page's time.
    env.setdefault("dramatiq_queue_prefetch", str(settings.worker_threads))
    if settings.worker_metrics_port:
        # Read by Dramatiq's Prometheus middleware at import (workers/entry.py adds it).
        env.setdefault("dramatiq_prom_host", settings.worker_metrics_host)
        env.setdefault("dramatiq_prom_port", str(settings.worker_metrics_port))
        env.setdefault("dramatiq_prom_db", str((settings.data_dir / "dramatiq-prometheus").resolve()))
    # Not for fork safety (workers never fork after loading the tokenizer): it caps the tokenizer's own
    # thread pool, which would otherwise compete with the worker threads on a small machine.
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name, value in malloc.ENVIRONMENT.items():  # glibc reads these at start: memory given back
        env.setdefault(name, value)
    return env


def check_worker_metrics_port(settings: Settings) -> None:
    """Say which setting to change when another process holds the workers' metrics port.

    Dramatiq's exporter would otherwise die with a long traceback ending in "Address already in use".
    """
    if not settings.worker_metrics_port:
        return
    address = (settings.worker_metrics_host, settings.worker_metrics_port)
    with socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise RagcordError(
                    f"the workers' metrics port {address[0]}:{address[1]} is taken ({exc.strerror}; another "
                    "ragcord worker?): set RAGCORD_WORKER_METRICS_PORT to a free port, or 0 to turn it off"
                ) from None
            raise RagcordError(  # an unknown host, an address of another machine, a port below 1024
                f"the workers' metrics cannot listen on {address[0]}:{address[1]} ({exc.strerror}): set "
                "RAGCORD_WORKER_METRICS_HOST to an address of this machine, or RAGCORD_WORKER_METRICS_PORT "
                "to 0 to turn them off"
            ) from None


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Become the Dramatiq master: on Ctrl-C or SIGTERM it sends each worker one SIGTERM (a graceful stop).

    Signal the master's pid, not its process group: a worker that gets a second SIGTERM (from the group
    signal, then from the master) exits at once, killing the page it is on.
    """
    check_worker_metrics_port(settings)
    command = worker_command(settings)
    os.nice(settings.worker_nice)  # the master's processes inherit it
    os.execvpe(command[0], command, worker_env(settings))
    return 0  # not reached


def cmd_rpc(settings: Settings, args: argparse.Namespace) -> int:
    """The admin API alone; SIGTERM or Ctrl-C stop it gracefully (calls in flight finish), exit 0."""
    from rpc.server import check_admin_address, serve

    check_admin_address(settings)
    return asyncio.run(_until_signal("admin API", serve(settings)))


def cmd_bot(settings: Settings, args: argparse.Namespace) -> int:
    """The Discord bot alone; SIGTERM or Ctrl-C close its gateway session and exit 0."""
    from bot.app import run_bot

    return asyncio.run(_until_signal("Discord bot", run_bot(settings)))


async def _until_signal(name: str, service: Coroutine[Any, Any, None]) -> int:
    """Run `service` until it ends or SIGINT/SIGTERM arrives; on a signal cancel it (its `finally`
    stops it gracefully) and return 0. Its own error, or SystemExit, propagates."""
    received: list[str] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    task = asyncio.create_task(service)
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            log.info("%s: %s received, stopping", name, received[0] if received else "stop")
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if not received or not task.cancelled():
        task.result()  # the service ended on its own: its error (or SystemExit) is the command's
    log.info("%s stopped", name)
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """The admin API in this process, the Dramatiq workers as a child; Ctrl-C stops both cleanly."""
    from ragcord.localredis import ensure_redis
    from rpc.server import check_admin_address, check_exposure

    check_exposure(settings)
    check_admin_address(settings)
    check_worker_metrics_port(settings)
    redis_process = ensure_redis(settings.redis_url, settings.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Its own process group: a Ctrl-C in the terminal reaches this process only, which then sends the
    # master one SIGTERM. Were the master to see the terminal's SIGINT too, its workers would get two
    # SIGTERMs, and Dramatiq kills a worker process at the second one, mid-page.
    workers = subprocess.Popen(
        worker_command(settings),
        env=worker_env(settings),
        process_group=0,
        preexec_fn=functools.partial(_start_worker_master, settings.worker_nice),
    )
    log.info(
        "workers started (pid %s: %s processes x %s threads)",
        workers.pid,
        settings.worker_processes,
        settings.worker_threads,
    )
    try:
        return asyncio.run(_serve_until_stopped(settings, workers))
    finally:
        _stop_workers(workers, settings.worker_stop_seconds)
        _log_unfinished_crawls(settings)
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(timeout=REDIS_STOP_SECONDS)
        log.info("stopped")


def _start_worker_master(nice: int) -> None:
    """In the workers' master, before exec: its CPU priority (settings.worker_nice, inherited by the
    worker processes), and a SIGTERM when `ragcord serve` dies without stopping it."""
    os.nice(nice)
    _die_with_parent()


def _die_with_parent() -> None:
    """SIGTERM when `ragcord serve` dies without stopping this process.

    Its own process group keeps it from a terminal's Ctrl-C; this keeps it from outliving a SIGKILL.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def _serve_until_stopped(settings: Settings, workers: subprocess.Popen[bytes]) -> int:
    """Run the API (and the bot) until a signal, a crash, or the workers exiting; 1 if the workers died."""
    from ragcord import aio
    from ragcord.bootstrap import bootstrap

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # One set of services for the API and the bot: one model, one store handle, one set of thread pools.
    services = bootstrap(settings)
    aio.install(services.executors)
    try:
        await aio.run_in(services.executors.io, services.embedder.load)  # once, before the API and the bot
        return await _serve_services(settings, workers, services, stop)
    finally:
        services.close()


async def _serve_services(
    settings: Settings, workers: subprocess.Popen[bytes], services: Services, stop: asyncio.Event
) -> int:
    from rpc.server import serve

    api_ready = asyncio.Event()
    api = asyncio.create_task(serve(settings, services=services, ready=api_ready))
    announce = asyncio.create_task(_announce_ready(settings, api_ready))
    watch_workers = asyncio.create_task(_exited(workers))
    stopped = asyncio.create_task(stop.wait())
    tasks: set[asyncio.Task[Any]] = {api, watch_workers, stopped}
    bot: asyncio.Task[None] | None = None
    if settings.discord_token is not None:
        from bot.app import run_bot

        # The API's /metrics covers it; the services are the API's.
        bot = asyncio.create_task(run_bot(settings, metrics=False, services=services))
        tasks.add(bot)
    else:
        log.info("DISCORD_TOKEN is not set: running without the Discord bot")
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    announce.cancel()
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if watch_workers in done:
        log.error("workers exited with status %s; stopping", workers.returncode)
        return 1
    for service in (api, bot):
        if service is not None and service in done and (error := service.exception()) is not None:
            raise error
    return 0


async def _announce_ready(settings: Settings, api_ready: asyncio.Event) -> None:
    """One line when the admin API answers: that ragcord is ready, where, and what to type next."""
    await api_ready.wait()
    log.info(
        "ready: admin API on %s (auth %s), %s worker processes x %s threads, data in %s; "
        "next: ragcord crawl <docs URL> --kb <name> --watch",
        settings.grpc_address,
        "on" if settings.admin_token is not None else "off: loopback only",
        settings.worker_processes,
        settings.worker_threads,
        settings.data_dir.resolve(),
    )


async def _exited(process: subprocess.Popen[bytes]) -> None:
    while process.poll() is None:
        await asyncio.sleep(0.5)


def _stop_workers(workers: subprocess.Popen[bytes], grace_seconds: float) -> None:
    """Let the workers finish their current pages (one SIGTERM to the master), then kill what is left.

    A second Ctrl-C or SIGTERM kills them at once. Only the master is signalled: it stops its workers,
    and a process-group SIGTERM can hang Dramatiq's AsyncIO middleware.
    """
    if workers.poll() is not None:
        return
    log.info(
        "stopping workers: they finish their current pages (up to %ss; Ctrl-C again to kill them now)",
        grace_seconds,
    )
    workers.send_signal(signal.SIGTERM)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        workers.wait(timeout=grace_seconds + WORKERS_EXIT_MARGIN_SECONDS)
        log.info("workers stopped (status %s)", workers.returncode)
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as exc:
        why = "asked again" if isinstance(exc, KeyboardInterrupt) else f"still busy after {grace_seconds}s"
        log.warning("killing the workers (%s): the pages they were on will be redelivered", why)
        os.killpg(workers.pid, signal.SIGKILL)
        workers.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _log_unfinished_crawls(settings: Settings) -> None:
    """Say which crawls the stop left running: their queued pages wait in Redis for the next workers."""
    import redis

    from ragcord.jobs.records import JobState
    from ragcord.jobs.store import JobStore
    from ragcord.redisconn import redis_client

    try:
        client = redis_client(
            settings.redis_url, retry_seconds=settings.redis_retry_seconds, socket_timeout=5
        )
        with client:
            store = JobStore(
                client,
                prefix=settings.key_prefix,
                retention=settings.event_retention,
                keep_seconds=settings.job_retention_seconds,
            )
            running, _ = store.list(state=JobState.RUNNING, page_size=100)
    except redis.RedisError as exc:
        log.warning("could not list the running crawls: %s", exc)
        return
    outstanding = sum(
        max(job.pages_discovered - (job.pages_done + job.pages_failed + job.pages_skipped), 0)
        for job in running
    )
    if running:
        log.warning(
            "stopped with %s crawl(s) running (%s) and %s pages not yet done; "
            "they will be redelivered and continue when workers start again",
            len(running),
            ", ".join(job.id for job in running),
            outstanding,
        )
