"""Processes for end-to-end tests: `ragcord serve|rpc|worker` and the real grpcurl binary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
GRPCURL = str(BIN / "grpcurl")
RAGCORD = str(BIN / "ragcord")
SERVICE = "ragcord.admin.v1.AdminService"


def parse_json_stream(text: str) -> list[dict]:
    """grpcurl prints one JSON document per message, back to back."""
    decoder = json.JSONDecoder()
    out, index = [], 0
    text = text.strip()
    while index < len(text):
        obj, end = decoder.raw_decode(text, index)
        out.append(obj)
        index = end
        while index < len(text) and text[index].isspace():
            index += 1
    return out


class Grpcurl:
    def __init__(self, address: str, token: str | None = None) -> None:
        self.address = address
        self.token = token

    def run(
        self, method: str, data: dict | None = None, *, token: str | None = "default", timeout: float = 120
    ) -> subprocess.CompletedProcess:
        token = self.token if token == "default" else token
        args = [GRPCURL, "-plaintext", "-max-time", str(int(timeout))]
        if token:
            args += ["-H", f"authorization: Bearer {token}"]
        if data is not None:
            args += ["-d", json.dumps(data)]
        args += [self.address, method if "/" in method or method == "list" else f"{SERVICE}/{method}"]
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout + 10)

    def call(self, method: str, data: dict | None = None, **kw) -> list[dict]:
        result = self.run(method, data, **kw)
        if result.returncode != 0:
            raise GrpcurlError(result.stderr.strip())
        return parse_json_stream(result.stdout)


class GrpcurlError(Exception):
    @property
    def code(self) -> str:
        for line in str(self).splitlines():
            if line.strip().startswith("Code:"):
                return line.split(":", 1)[1].strip()
        return ""


class Service:
    """A ragcord process with its environment; stopped with SIGTERM (or killed)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log = log
        self.log_file = open(log, "ab")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, **env}
        full_env.pop("DISCORD_TOKEN", None)
        self.proc = subprocess.Popen(
            [RAGCORD, *args],
            env=full_env,
            cwd=cwd,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 40) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log_file.close()
        return self.proc.returncode

    def kill_all(self) -> None:
        """SIGKILL the whole process group: the master and every worker process."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def wait_healthy(grpcurl: Grpcurl, service: Service | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None and not service.alive():
            raise RuntimeError(f"service exited:\n{service.tail()}")
        result = grpcurl.run("grpc.health.v1.Health/Check", {}, token=None, timeout=5)
        if result.returncode == 0 and "SERVING" in result.stdout:
            return
        time.sleep(0.3)
    raise TimeoutError(
        f"admin API not healthy after {timeout}s" + (f":\n{service.tail()}" if service else "")
    )


# -- faults: a Redis of the test's own, RabbitMQ, the loopback Discord ------------------------------------


class RedisServer:
    """A redis-server of the test's own on a free port, appendonly in `directory`, to SIGKILL and restart.

    AOF with the default `appendfsync everysec` still keeps every acknowledged write across a SIGKILL of
    the process (the kernel has it); only a crash of the machine could lose the last second.
    """

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> float:
        """Start it (reading the AOF back) and return the seconds until it answered PING."""
        import redis

        self.directory.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--logfile",
                str(self.log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        while time.monotonic() < started + timeout:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited {self.proc.returncode}: {tail}")
            try:
                with redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=1) as client:
                    if client.ping():
                        return time.monotonic() - started
            except redis.RedisError:
                time.sleep(0.05)
        raise TimeoutError(f"redis-server on port {self.port} did not answer in {timeout}s")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final write; what a crash or an OOM kill does."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


RABBITMQ_URL = os.environ.get("RAGCORD_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


def rabbitmq_problem(url: str = RABBITMQ_URL) -> str | None:
    """None when RabbitMQ answers at `url`, else why not."""
    import pika
    import pika.exceptions

    params = pika.URLParameters(url)
    params.socket_timeout = params.blocked_connection_timeout = 3
    params.connection_attempts = 1
    try:
        pika.BlockingConnection(params).close()
    except (pika.exceptions.AMQPError, OSError) as exc:
        return f"RabbitMQ not available at {url}: {exc!r}"
    return None


def delete_rabbitmq_queues(prefix: str, url: str = RABBITMQ_URL) -> None:
    """Remove the queues ragcord declared under `prefix` (workers/broker.py names them `<prefix>.crawl`)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(f"{prefix}.crawl{suffix}")
    finally:
        connection.close()


def discord_env(fake) -> dict[str, str]:
    """The environment of a `ragcord bot` (or serve) pointed at the loopback Discord of tests/discord_fake.py.

    RAGCORD_DISCORD_TOKEN, not DISCORD_TOKEN: `Service` drops the latter so no test talks to real Discord.
    """
    return {
        "RAGCORD_DISCORD_TOKEN": fake.token,
        "RAGCORD_DISCORD_API_BASE_URL": fake.api_base,
        "RAGCORD_DISCORD_GATEWAY_URL": fake.gateway_url,
        "RAGCORD_DISCORD_GUILD_IDS": str(fake.guild_id),
    }


def wait_for_log(service: Service, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in service.log.read_text(errors="replace"):
            return
        if not service.alive():
            raise RuntimeError(f"service exited before logging {text!r}:\n{service.tail()}")
        time.sleep(0.2)
    raise TimeoutError(f"{text!r} not in {service.log} after {timeout}s:\n{service.tail()}")
