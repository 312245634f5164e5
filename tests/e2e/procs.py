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
