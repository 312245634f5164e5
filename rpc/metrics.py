"""Counts and times every admin API call by method and status code."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar, cast

import grpc

from ragcord.metrics import RPC_LATENCY, RPC_REQUESTS

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")

_Context = grpc.aio.ServicerContext[_Request, _Response]


def _code(context: grpc.aio.ServicerContext[_Request, _Response]) -> str:
    code = context.code()
    if code is None:
        return "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Request, _Response] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Request, _Response] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]

        if handler.unary_unary:
            # cast: types-grpcio types handlers for the sync server; under grpc.aio they are coroutines.
            inner = cast(
                "Callable[[_Request, _Context[_Request, _Response]], Awaitable[_Response]]",
                handler.unary_unary,
            )

            async def unary(request: _Request, context: _Context[_Request, _Response]) -> _Response:
                started = time.perf_counter()
                try:
                    return await inner(request, context)
                finally:
                    RPC_LATENCY.labels(method).observe(time.perf_counter() - started)
                    RPC_REQUESTS.labels(method, _code(context)).inc()

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            # cast: as above, a grpc.aio server-streaming handler is an async generator.
            inner_stream = cast(
                "Callable[[_Request, _Context[_Request, _Response]], AsyncIterator[_Response]]",
                handler.unary_stream,
            )

            async def stream(
                request: _Request, context: _Context[_Request, _Response]
            ) -> AsyncIterator[_Response]:
                started = time.perf_counter()
                try:
                    async for item in inner_stream(request, context):
                        yield item
                finally:
                    RPC_LATENCY.labels(method).observe(time.perf_counter() - started)
                    RPC_REQUESTS.labels(method, _code(context)).inc()

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
