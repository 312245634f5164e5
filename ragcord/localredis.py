"""`ragcord serve` on a fresh machine: start a local redis-server when none answers."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

log = logging.getLogger(__name__)


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_redis(url: str, data_dir: Path) -> subprocess.Popen[bytes] | None:
    """Start redis-server (AOF on, data under data_dir) for a local URL that does not answer.

    Returns the process it started, or None when Redis already answers. Raises SystemExit with one line
    saying how to get Redis when it cannot start one.
    """
    if redis_answers(url):
        return None
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"Redis at {url} does not answer; start it or set RAGCORD_REDIS_URL")
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(
            f"Redis at {url} does not answer and redis-server is not installed: "
            "`apt-get install redis-server` (or set RAGCORD_REDIS_URL to a running Redis)"
        )
    directory = (data_dir / "redis").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            binary,
            "--bind",
            host,
            "--port",
            str(port),
            "--dir",
            str(directory),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--logfile",
            str(directory / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        if redis_answers(url):
            log.info("started redis-server on %s:%s (data in %s)", host, port, directory)
            return process
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"redis-server did not start; see {directory / 'redis.log'}")
