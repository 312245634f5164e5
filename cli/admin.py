"""A small client of the admin API: the channel, the bearer token and the stubs.

grpc and the generated stubs are imported when a client is built, so `ragcord --help` and the
process commands do not pay for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ragcord.settings import Settings

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from google.protobuf.timestamp_pb2 import Timestamp

DEFAULT_TIMEOUT_SECONDS = 30.0
# grpc's own reconnect back-off grows to 120 s, so a watch would sit out a restarted server that long;
# the watch retries on its own schedule and wants each try to reach the server.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


# How grpc's client words a call that reached no server (refused, nothing listening) and an unknown host.
NOT_CONNECTED = "failed to connect to all addresses"
NOT_RESOLVED = "DNS resolution failed"


def admin_address(settings: Settings, address: str | None) -> tuple[str, str]:
    """Where the commands call the admin API, and what says so: `--address` or the setting."""
    return (address, "--address") if address else (settings.grpc_address, "RAGCORD_GRPC_ADDRESS")


def call_error(exc: Exception, address: str, source: str) -> str | None:
    """What to tell the operator about a failed call to `address`; None when `exc` is no grpc.RpcError."""
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if not (callable(code) and callable(details)):  # a grpc.RpcError, without importing grpc here
        return None
    name, text = code().name, str(details() or "")
    if name == "UNAVAILABLE" and text.startswith(NOT_CONNECTED):
        return (
            f"no ragcord server answers on {address} ({source}): "
            "start it with `make serve` or `ragcord serve`"
        )
    if name == "UNAVAILABLE" and text.startswith(NOT_RESOLVED):
        return f"cannot find the host of {address} ({source}): set it to the host:port of a ragcord server"
    if name == "UNAUTHENTICATED":
        return (
            f"{name}: {text}. The CLI sends RAGCORD_ADMIN_TOKEN (from the environment or .env): "
            "set it to the server's token"
        )
    return f"{name}: {text}"


class Admin:
    """The admin API as the commands use it: unary calls by name, and the job event stream."""

    def __init__(self, settings: Settings, address: str | None) -> None:
        import grpc

        from rpc.v1 import admin_pb2, admin_pb2_grpc

        self.grpc = grpc
        self.pb = admin_pb2
        self.address, self.address_source = admin_address(settings, address)
        self.channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self.stub = admin_pb2_grpc.AdminServiceStub(self.channel)
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
        self.metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()

    def call(self, name: str, request: Message, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Any:
        return getattr(self.stub, name)(request, metadata=self.metadata, timeout=timeout)

    def watch(self, job_id: str, after: str = "") -> Iterator[Any]:
        events: Iterator[Any] = self.stub.WatchJob(
            self.pb.WatchJobRequest(job_id=job_id, after_event_id=after), metadata=self.metadata
        )
        return events

    def explain(self, exc: Exception) -> str | None:
        """What to tell the operator about a failed call (see `call_error`)."""
        return call_error(exc, self.address, self.address_source)

    def state_name(self, value: int) -> str:
        """`JOB_STATE_RUNNING` -> `RUNNING`, as the tables and summaries print it."""
        name: str = self.pb.JobState.Name(value)
        return name.removeprefix("JOB_STATE_")


def local_time(value: Timestamp | None) -> str:
    """A protobuf timestamp in local time for tables; `-` when unset."""
    if value is None or not value.seconds:
        return "-"
    return datetime.fromtimestamp(value.seconds).strftime("%Y-%m-%d %H:%M:%S")
