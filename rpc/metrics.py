"""Counts and times every admin API call by method and status code."""

from __future__ import annotations

import time

import grpc

from ragcord.metrics import RPC_LATENCY, RPC_REQUESTS


def _code(context) -> str:
    code = context.code()
    if code is None:
        return "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request, context):
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
            inner_stream = handler.unary_stream

            async def stream(request, context):
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
