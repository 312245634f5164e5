"""Scope patterns are the caller's regular expressions: a catastrophic one must neither hang the API that
accepts it nor the crawl that matches every link against it."""

from __future__ import annotations

import time

import grpc
import pytest

from ragcord.errors import InvalidArgument
from ragcord.urls import MAX_PATTERN_CHARS, MAX_PATTERNS, Scope
from rpc.v1 import admin_pb2 as pb
from tests.fuzz.conftest import AUTH, server_in_thread, stub_for

CATASTROPHIC = ["(a+)+$", "(x+x+)+y", "(a|aa)+$", r"(\w+\s?)+$", "(a*)*b", r"^(([a-z])+.)+[A-Z]([a-z])+$"]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_a_catastrophic_pattern_is_refused_or_matched_with_a_time_limit(pattern):
    started = time.monotonic()
    try:
        scope = Scope("https://d.example.com/", exclude=(pattern,))
    except InvalidArgument as exc:
        assert "takes too long to match" in str(exc)  # the probe caught it: refused with the reason
        return
    # Accepted: each link it is matched against still gets an answer, however hostile the path.
    for path in ("a" * 5000 + "!", "x" * 5000, "ab " * 2000 + "!", "a" * 40 + "!"):
        scope.why_outside(f"https://d.example.com/{path}")  # in or out, it answers
    assert time.monotonic() - started < 60  # returns, never hangs (generous: each match is capped at 50 ms)


def test_a_slow_match_counts_as_out_of_scope():
    scope = Scope("https://d.example.com/", include=("(x+x+)+y",))
    assert scope.why_outside("https://d.example.com/" + "x" * 5000) == (
        "out of scope: a scope pattern took too long to match this URL"
    )
    assert scope.why_outside("https://d.example.com/xxy") is None  # an ordinary match is unaffected


def test_patterns_are_bounded_in_size_and_number():
    with pytest.raises(InvalidArgument, match="keep a pattern under"):
        Scope("https://d.example.com/", include=("a" * (MAX_PATTERN_CHARS + 1),))
    with pytest.raises(InvalidArgument, match="at most"):
        Scope("https://d.example.com/", exclude=("/x/",) * (MAX_PATTERNS + 1))
    with pytest.raises(InvalidArgument, match="not a valid regular expression"):
        Scope("https://d.example.com/", include=("a{99999999999}",))


def test_start_crawl_with_catastrophic_patterns_answers_and_never_hangs(make_settings):
    with server_in_thread(make_settings(allow_private_networks=True)) as (address, services):
        channel, stub = stub_for(address)
        for pattern in CATASTROPHIC:
            started = time.monotonic()
            try:
                job = stub.StartCrawl(
                    pb.StartCrawlRequest(
                        url="https://docs.example.com/", knowledge_base="p", exclude_patterns=[pattern]
                    ),
                    metadata=AUTH,
                    timeout=60,
                )
                stub.CancelJob(pb.CancelJobRequest(job_id=job.id), metadata=AUTH, timeout=60)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc
                assert "exclude_patterns" in exc.details() and "takes too long" in exc.details()
            assert time.monotonic() - started < 60
        channel.close()


HOSTILE_HOSTS = [
    "https://" + "a" * 5990 + "/",
    "http://" + "a" * 70 + ".com/",
    "http://" + "ü" * 300 + "/",
    "http://x..y/",
    "http://[::ffff:10.0.0.1]/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://169.254.169.254/latest/",
    "http://[::]/",
    "http://0.0.0.0/",
    "http://[fe80::1%25eth0]/",
]


def test_hostile_hosts_are_refused_with_the_address_guard_on(make_settings):
    """With private networks refused the seed's host is resolved: names the resolver cannot even encode,
    and the many spellings of a private address, get a clear refusal (no DNS is needed for any of them)."""
    with server_in_thread(make_settings(allow_private_networks=False)) as (address, _):
        channel, stub = stub_for(address)
        for url in HOSTILE_HOSTS:
            with pytest.raises(grpc.RpcError) as refused:
                stub.StartCrawl(pb.StartCrawlRequest(url=url, knowledge_base="h"), metadata=AUTH, timeout=60)
            code, details = refused.value.code(), refused.value.details()
            assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED), (
                url,
                details,
            )
            assert details and len(details) <= 600, url
        channel.close()
