"""The admin token through the real server: right, wrong, empty and wrong-length tokens, and the comparison
done in constant time (hmac.compare_digest) so the time a refusal takes says nothing about the token."""

from __future__ import annotations

import hmac

import grpc
import pytest
from pydantic import SecretStr

from rpc.auth import BearerTokenInterceptor
from rpc.v1 import admin_pb2 as pb
from tests.harness import admin_api

TOKEN = "tok-4f1c9a7e2b8d4c31"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"Bearer {TOKEN}", grpc.StatusCode.OK),
        ("Bearer wrong-token-of-other-len", grpc.StatusCode.UNAUTHENTICATED),
        ("Bearer " + TOKEN[:-1] + "X", grpc.StatusCode.UNAUTHENTICATED),  # same length, last byte differs
        ("Bearer " + TOKEN[:-1], grpc.StatusCode.UNAUTHENTICATED),  # a prefix of the token
        ("Bearer " + TOKEN + "0", grpc.StatusCode.UNAUTHENTICATED),  # the token and more
        ("Bearer " + "x" * 4000, grpc.StatusCode.UNAUTHENTICATED),
        (TOKEN, grpc.StatusCode.UNAUTHENTICATED),  # no scheme
        (f"bearer {TOKEN}", grpc.StatusCode.UNAUTHENTICATED),
        (f"Bearer  {TOKEN}", grpc.StatusCode.UNAUTHENTICATED),
        ("Bearer ", grpc.StatusCode.UNAUTHENTICATED),
        ("", grpc.StatusCode.UNAUTHENTICATED),
        (None, grpc.StatusCode.UNAUTHENTICATED),
    ],
)
async def test_only_the_exact_bearer_token_is_let_in(make_settings, header, expected):
    settings = make_settings(admin_token=SecretStr(TOKEN))
    metadata = () if header is None else (("authorization", header),)
    async with admin_api(settings) as (stub, _):
        try:
            await stub.ListKnowledgeBases(pb.ListKnowledgeBasesRequest(), metadata=metadata)
            code, details = grpc.StatusCode.OK, ""
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details()
    assert code == expected
    if code != grpc.StatusCode.OK:
        assert TOKEN not in details  # a refusal never echoes the real token
        assert ("missing authorization" in details) if not header else ("not valid" in details)


async def test_the_token_is_compared_in_constant_time(make_settings, monkeypatch):
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a, b):  # the real comparison, with a note of what it compared
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    async with admin_api(make_settings(admin_token=SecretStr(TOKEN))) as (stub, _):
        for header in (f"Bearer {TOKEN}", "Bearer short", "Bearer " + "y" * len(TOKEN)):
            try:
                await stub.ListJobs(pb.ListJobsRequest(), metadata=(("authorization", header),))
            except grpc.aio.AioRpcError:
                pass
    assert [given for given, _ in seen] == [
        f"Bearer {TOKEN}".encode(),
        b"Bearer short",
        ("Bearer " + "y" * len(TOKEN)).encode(),
    ]
    assert all(expected == f"Bearer {TOKEN}".encode() for _, expected in seen)


def test_the_interceptor_keeps_the_token_only_as_the_expected_header():
    interceptor = BearerTokenInterceptor(TOKEN)
    assert TOKEN not in repr(interceptor)
