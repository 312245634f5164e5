"""The grpc.aio admin server: auth, AdminService, health and reflection."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ragcord import aio
from ragcord.answering.service import AskService, build_ask_service
from ragcord.bindings import KnowledgeBaseOwners
from ragcord.bootstrap import Services, bootstrap
from ragcord.errors import RagcordError
from ragcord.feedback import FeedbackStore
from ragcord.jobs import JobWatcher
from ragcord.jobs.watcher import settle_reads
from ragcord.metrics import serve_metrics
from ragcord.questions import build_question_log
from ragcord.redisconn import async_redis_client
from ragcord.settings import Settings, split_host_port
from rpc.auth import BearerTokenInterceptor
from rpc.metrics import MetricsInterceptor
from rpc.servicer import AdminServicer
from rpc.v1 import admin_pb2, admin_pb2_grpc
from workers.enqueue import build_enqueue

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 5
SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
# grpc sets SO_REUSEPORT by default: a second server on a taken port would listen beside the first and
# take a share of its calls. Off, the second one fails to bind.
# grpc.aio accepts one new call per turn of the event loop; with hundreds of streams writing, a turn is long,
# and core cancels a call not accepted within 30 s (its default): WatchJob streams and even GetJob ended
# CANCELLED with nothing received. Accepted late, they are served (issue 19, part 6).
UNACCEPTED_CALL_SECONDS = 600
SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.server_max_unrequested_time_in_server", UNACCEPTED_CALL_SECONDS),
]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    if not is_loopback(settings.grpc_host) and settings.admin_token is None:
        raise RagcordError(
            f"refusing to serve the admin API on {settings.grpc_address} without a token: "
            "set RAGCORD_ADMIN_TOKEN, or bind to 127.0.0.1"
        )


def address_taken(address: str) -> str:
    return (
        f"the admin API's address {address} is taken (another ragcord?): "
        "set RAGCORD_GRPC_ADDRESS to a free one"
    )


def check_admin_address(settings: Settings) -> None:
    """Fail before anything starts when the admin API could not listen on its address.

    A plain socket bound the way grpc binds (SO_REUSEADDR, not SO_REUSEPORT) tells a taken port from one
    this machine lacks; grpc's own bind error says neither and logs a line of its own.
    """
    host, port = split_host_port(settings.grpc_address) or ("", 0)
    if not port:
        return  # a free port chosen by the system
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise RagcordError(
            f"the admin API cannot listen on {settings.grpc_address} ({exc.strerror}): "
            "set RAGCORD_GRPC_ADDRESS to host:port of this machine"
        ) from None
    problems = []
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise RagcordError(address_taken(settings.grpc_address)) from None
                problems.append(exc.strerror)
    if len(problems) == len(addresses):  # grpc listens if it can bind one of them (localhost: v4 or v6)
        raise RagcordError(
            f"the admin API cannot listen on {settings.grpc_address} ({problems[0]}): "
            "set RAGCORD_GRPC_ADDRESS to an address of this machine and a port you may use"
        )


async def build_server(
    settings: Settings, services: Services | None = None, *, ask: AskService | None = None
) -> tuple[grpc.aio.Server, int]:
    """The server, not started; tests pass their own `services` and `ask` (an answerer seam)."""
    check_exposure(settings)
    services = services or bootstrap(settings)
    watcher = JobWatcher(
        # Reads block up to a heartbeat interval: the socket timeout must be longer.
        async_redis_client(
            settings.redis_url,
            retry_seconds=settings.redis_retry_seconds,
            socket_timeout=settings.watch_heartbeat_seconds + 30,
        ),
        prefix=settings.key_prefix,
        heartbeat_seconds=settings.watch_heartbeat_seconds,
        max_streams=settings.watch_max_streams,
        window_events=settings.watch_queue_events,
    )
    interceptors: list[grpc.aio.ServerInterceptor] = [MetricsInterceptor()]  # first: it sees denied calls too
    if settings.admin_token is not None:
        interceptors.append(BearerTokenInterceptor(settings.admin_token.get_secret_value()))
    server = grpc.aio.server(interceptors=interceptors, options=SERVER_OPTIONS)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(
            settings,
            jobs=services.jobs,
            watcher=watcher,
            store=services.store,
            enqueue=build_enqueue(settings),
            ask=ask or build_ask_service(services),
            feedback=FeedbackStore(services.redis, prefix=settings.key_prefix),
            owners=KnowledgeBaseOwners(services.redis, prefix=settings.key_prefix),
            executors=services.executors,
            questions=build_question_log(settings, services.redis),
            embedder=services.embedder,
        ),
        server,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_insecure_port(settings.grpc_address)
    except RuntimeError:  # grpc says only "Failed to bind"; taken is the likely cause (check_admin_address)
        port = 0
    if port == 0:
        await server.stop(None)
        raise RagcordError(address_taken(settings.grpc_address))
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    return server, port


async def serve(
    settings: Settings, *, ready: asyncio.Event | None = None, services: Services | None = None
) -> None:
    """Serve until cancelled, then stop gracefully; `services` given in stay open (the caller closes them)."""
    owned = services is None
    services = services or bootstrap(settings)
    aio.install(services.executors)
    # Before health says SERVING: the first Ask is not slow (once per process: loading twice is a no-op).
    await aio.run_in(services.executors.io, services.embedder.load)
    # Jobs an older ragcord wrote before the cluster hash tags get the tagged key names (once per start).
    if renamed := await aio.run_in(services.executors.io, services.jobs.migrate_hash_tags):
        log.info("%d jobs from before the Redis Cluster hash tags now have the tagged key names", renamed)
    # Jobs an older ragcord ended without an expiry get one, counted from when they ended (once per start).
    if migrated := await aio.run_in(services.executors.io, services.jobs.expire_unexpiring):
        log.info("%d ended jobs from before job retention now expire after the retention period", migrated)
    server, port = await build_server(settings, services)
    await server.start()
    serve_metrics(settings.metrics_address, services.jobs)
    log.info(
        "admin API listening on %s (auth %s)",
        settings.grpc_address,
        "on" if settings.admin_token is not None else "off: loopback only",
    )
    if ready is not None:
        ready.set()
    try:
        await server.wait_for_termination()
    finally:
        log.info("admin API stopping: calls in flight get %ss to finish", STOP_GRACE_SECONDS)
        await server.stop(grace=STOP_GRACE_SECONDS)
        await settle_reads(settings.watch_heartbeat_seconds + 2)
        if owned:
            services.close()
