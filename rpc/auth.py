"""Bearer-token auth for the admin API; health and reflection stay open."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn, TypeVar

import grpc

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")

# What a handler of a refused call runs (the request is never looked at).
_DenyUnary = Callable[[object, grpc.aio.ServicerContext[object, object]], Awaitable[NoReturn]]
_DenyStream = Callable[[object, grpc.aio.ServicerContext[object, object]], AsyncIterator[None]]

OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def _deny(message: str) -> tuple[_DenyUnary, _DenyStream]:
    async def unary(request: object, context: grpc.aio.ServicerContext[object, object]) -> NoReturn:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def stream(
        request: object, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[None]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator

    return unary, stream


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Request, _Response] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Request, _Response] | None:
        method = handler_call_details.method
        if method.startswith(OPEN_SERVICES):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = metadata.get("authorization", "")
        if isinstance(given, str):
            given = given.encode()
        if given and hmac.compare_digest(given, self._expected):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        message = (
            "missing authorization metadata: send 'authorization: Bearer <RAGCORD_ADMIN_TOKEN>'"
            if not given
            else "the bearer token is not valid"
        )
        unary, stream = _deny(message)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
