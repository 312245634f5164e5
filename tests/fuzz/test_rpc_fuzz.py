"""Every RPC of the admin API fed random and hostile requests (hypothesis) through the real server.

What must hold for every request: a status the caller can act on (never INTERNAL or UNKNOWN, nor UNAVAILABLE
or a deadline: nothing is down, and nothing may hang), a message with every refusal, and a server that
answers normal requests afterwards. See conftest.py for why no page is ever fetched.
"""

from __future__ import annotations

import collections
import json
import os
import time
from dataclasses import dataclass, field

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rpc.v1 import admin_pb2 as pb
from tests.fuzz.conftest import AUTH, server_in_thread, stub_for

# Huge drawn strings make hypothesis warn about the size of their repr; it is only printed on failure.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")

INT32 = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.sampled_from([0, -1, 1, 20, 21, 500, 501, 100_000, 100_001, 2**31 - 1, -(2**31)]),
)
HUGE = st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.integers(2_000, 50_000))
ODD = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "\n",
        "%00",
        "../../etc/passwd",
        "☃",
        "数据",
        "ü",
        "١٢٣",  # Arabic-Indic digits: str.isdigit() says yes, int() of them is not what a cursor means
        "²",
        "１２３",
        "9" * 5000,  # more digits than int() converts
        "-1",
        "0",
        "1-0",
        "0-0",
        "1e9",
        "null",
        "' OR 1=1 --",
        "{{7*7}}",
        "${jndi:ldap://x}",
        "\u202egnp.exe",
        "a" * 63,
        "a" * 64,
    ]
)
TEXT = st.one_of(st.text(max_size=40), ODD, HUGE)
KB = st.one_of(
    st.sampled_from(["", "docs", "nope", "Not Valid", "-x", "_x", "docs\n", "DOCS", "a" * 63, "a" * 64]), TEXT
)
HOST = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,6}){1,2}\Z")
URL = st.one_of(
    st.sampled_from(
        [
            "https://docs.python.org/3/",
            "http://example.com/",
            "http://127.0.0.1:9/docs/",
            "http://[::1]:9/docs/",
            "ftp://example.com/",
            "http:///docs/",
            "http://[::1",
            "http://host:99999/",
            "http://host:-1/",
            "http://ü.example/",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "http://user:pw@example.com/",
            "http://" + "a" * 300 + ".com/",
            "https://example.com/" + "a" * 100_000,
            "https://docs.example.com/install.html",
        ]
    ),
    st.builds(lambda h, p: f"https://{h}/{p}", HOST, st.text(max_size=30)),
    TEXT,
)
PATTERN = st.one_of(
    st.sampled_from(
        [
            "(a+)+$",
            "(x+x+)+y",
            "(a|aa)+$",
            r"(\w+\s?)+$",
            "(.*a){20}",
            "(unclosed",
            "[",
            "*",
            "a{99999999999}",
            "(?P<x>",
            "\\",
            "(?<=a+)b",
            "^/docs/",
            r"\.html$",
            "(?i)API",
            "x" * 600,
        ]
    ),
    st.text(max_size=20),
    HUGE,
)
PATTERNS = st.one_of(st.lists(PATTERN, max_size=4), st.lists(st.just("/docs/"), min_size=51, max_size=60))
GUILDS = st.lists(
    st.one_of(INT32.map(str), TEXT, st.sampled_from(["123", " 123 ", "-5", "１２３", ""])), max_size=5
)
CURSOR = st.one_of(st.sampled_from(["", "0", "1", "2", "99999999999999999999"]), TEXT)
STATE = st.one_of(st.integers(0, 5), INT32)
SINCE = st.builds(Timestamp, seconds=st.integers(-(2**40), 2**40), nanos=st.integers(0, 999_999_999))


@dataclass
class Tally:
    """What the fuzzer saw: calls per status code, and the first bad outcomes."""

    codes: collections.Counter = field(default_factory=collections.Counter)
    per_method: collections.Counter = field(default_factory=collections.Counter)
    bad: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    samples: dict[str, str] = field(default_factory=dict)  # one message per status, for the report

    @property
    def total(self) -> int:
        return sum(self.codes.values())


# A job id: one of the jobs the fuzzer created (drawn as an index), or anything at all.
JOB_ID = st.one_of(st.integers(0, 1000).map(lambda i: ("known", i)), TEXT.map(lambda t: ("text", t)))


NOT_DOCS = KB.filter(lambda k: k != "docs")  # (docs stays as it is for Ask)
EVERY = st.one_of(st.sampled_from([0, 1, 3599, 3600, 86400, -1, 2**63 - 1]), INT32)


def _update(
    name: str, description: str | None, instructions: str | None
) -> tuple[str, pb.UpdateKnowledgeBaseRequest]:
    request = pb.UpdateKnowledgeBaseRequest(name=name)
    if description is not None:
        request.description = description
    if instructions is not None:
        request.answer_instructions = instructions
    return "UpdateKnowledgeBase", request


# Knowledge base records, re-crawls and schedules (issue 22).
KB_REQUESTS = [
    st.builds(
        lambda kb, d, i: (
            "CreateKnowledgeBase",
            pb.CreateKnowledgeBaseRequest(name=kb, description=d, answer_instructions=i),
        ),
        NOT_DOCS,
        TEXT,
        TEXT,
    ),
    st.builds(_update, NOT_DOCS, st.none() | TEXT, st.none() | TEXT),
    st.builds(lambda kb: ("GetKnowledgeBase", pb.GetKnowledgeBaseRequest(name=kb)), KB),
    st.builds(lambda kb: ("RecrawlKnowledgeBase", pb.RecrawlKnowledgeBaseRequest(knowledge_base=kb)), KB),
    st.builds(
        lambda kb, e: ("SetSchedule", pb.SetScheduleRequest(knowledge_base=kb, every_seconds=e)), KB, EVERY
    ),
    st.just(("ListSchedules", pb.ListSchedulesRequest())),
]


def requests() -> st.SearchStrategy:
    return st.one_of(
        st.builds(
            lambda url, kb, mp, md, inc, exc: (
                "StartCrawl",
                pb.StartCrawlRequest(
                    url=url,
                    knowledge_base=kb,
                    max_pages=mp,
                    max_depth=md,
                    include_patterns=inc,
                    exclude_patterns=exc,
                ),
            ),
            URL,
            KB,
            INT32,
            INT32,
            PATTERNS,
            PATTERNS,
        ),  # fmt: skip
        st.builds(lambda j: ("GetJob", j), JOB_ID),
        st.builds(
            lambda kb, s, size, tok: (
                "ListJobs",
                pb.ListJobsRequest(knowledge_base=kb, state=s, page_size=size, page_token=tok),
            ),
            KB,
            STATE,
            INT32,
            TEXT,
        ),  # fmt: skip
        st.builds(lambda j: ("CancelJob", j), JOB_ID),
        st.builds(lambda j, c: ("WatchJob", (j, c)), JOB_ID, CURSOR),
        st.builds(lambda kb: ("ListSources", pb.ListSourcesRequest(knowledge_base=kb)), KB),
        st.builds(lambda kb, u: ("GetSource", pb.GetSourceRequest(knowledge_base=kb, url=u)), KB, URL),
        st.builds(lambda kb, u: ("DeleteSource", pb.DeleteSourceRequest(knowledge_base=kb, url=u)), KB, URL),
        st.just(("ListKnowledgeBases", pb.ListKnowledgeBasesRequest())),
        st.builds(
            lambda kb: ("DeleteKnowledgeBase", pb.DeleteKnowledgeBaseRequest(knowledge_base=kb)),
            KB.filter(lambda k: k != "docs"),  # (docs stays for Ask; it is also refused while crawling)
        ),
        st.builds(
            lambda kb, g: (
                "SetKnowledgeBaseServers",
                pb.SetKnowledgeBaseServersRequest(knowledge_base=kb, discord_guild_ids=g),
            ),
            KB,
            GUILDS,
        ),  # fmt: skip
        st.builds(
            lambda stream, q, kb, conv, k, author: (
                "AskStream" if stream else "Ask",
                pb.AskRequest(question=q, knowledge_base=kb, conversation_id=conv, top_k=k, author=author),
            ),
            st.booleans(),
            st.one_of(st.sampled_from(["How do I install it?", "pip install?"]), TEXT),
            st.one_of(st.just("docs"), KB),
            TEXT,
            INT32,
            TEXT,
        ),  # fmt: skip
        st.builds(lambda c: ("ClearConversation", pb.ClearConversationRequest(conversation_id=c)), TEXT),
        *KB_REQUESTS,
        st.builds(
            lambda kb, size, tok: (
                "ListFeedback",
                pb.ListFeedbackRequest(knowledge_base=kb, page_size=size, page_token=tok),
            ),
            KB,
            INT32,
            CURSOR,
        ),  # fmt: skip
        st.builds(
            lambda kb, since: ("ListUnanswered", pb.ListUnansweredRequest(knowledge_base=kb, since=since)),
            KB,
            SINCE,
        ),
        st.builds(
            lambda kb, since: (
                "GetQuestionStats",
                pb.GetQuestionStatsRequest(knowledge_base=kb, since=since),
            ),
            KB,
            SINCE,
        ),
    )


BAD_METADATA = [(), (("authorization", "Bearer wrong"),), (("authorization", ""),), (("x-other", "1"),)]
# Auth mostly right, so the requests reach the methods; one call in twenty has none or a wrong one.
CALL_METADATA = st.sampled_from([AUTH] * 76 + BAD_METADATA)

ACCEPTABLE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.CANCELLED,  # the fuzzer's own cancel of a watch after its snapshot
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,  # a StartCrawl into a knowledge base a fuzzed crawl is still crawling
    grpc.StatusCode.ALREADY_EXISTS,  # CreateKnowledgeBase of one that exists
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNAUTHENTICATED,
}
CALL_TIMEOUT = 60  # seconds: a call that takes this long has hung


def _resolve_job(tally: Tally, job: tuple[str, object]) -> str:
    kind, value = job
    if kind == "known" and tally.job_ids:
        return tally.job_ids[int(str(value)) % len(tally.job_ids)]
    return str(value) if kind == "text" else "missing"


def send(stub, tally: Tally, method: str, request, metadata) -> grpc.StatusCode:
    if method in ("GetJob", "CancelJob"):
        request = getattr(pb, f"{method}Request")(job_id=_resolve_job(tally, request))
    elif method == "WatchJob":
        job, cursor = request
        request = pb.WatchJobRequest(job_id=_resolve_job(tally, job), after_event_id=cursor)
    code, details = grpc.StatusCode.OK, ""
    try:
        if method in ("WatchJob", "AskStream"):
            call = getattr(stub, method)(request, metadata=metadata, timeout=CALL_TIMEOUT)
            for _ in call:
                if method == "WatchJob":  # the snapshot came; a live job's stream would go on
                    call.cancel()
                    break
        else:
            reply = getattr(stub, method)(request, metadata=metadata, timeout=CALL_TIMEOUT)
            if method == "StartCrawl":
                tally.job_ids.append(reply.id)
            elif method == "RecrawlKnowledgeBase":
                tally.job_ids.extend(job.id for job in reply.jobs)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
    tally.codes[code.name] += 1
    tally.per_method[f"{method} {code.name}"] += 1
    tally.samples.setdefault(f"{method} {code.name}", details[:200])
    if code not in ACCEPTABLE or (
        code not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED) and not details
    ):
        if len(tally.bad) < 20:
            shown = repr(request)[:300]
            tally.bad.append(f"{method} {shown} -> {code.name}: {details[:300]!r}")
    return code


def cancel_fuzzed_jobs(stub, tally: Tally) -> int:
    cancelled = 0
    for job_id in dict.fromkeys(tally.job_ids):
        try:
            stub.CancelJob(pb.CancelJobRequest(job_id=job_id), metadata=AUTH, timeout=CALL_TIMEOUT)
            cancelled += 1
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc  # already cancelled by the fuzzer
    return cancelled


def run_fuzz(make_settings, *, examples: int, at_least: int) -> Tally:
    tally = Tally()
    with server_in_thread(make_settings(allow_private_networks=True)) as (address, services):
        channel, stub = stub_for(address)

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate],  # no shrinking: the bad outcomes are collected with their requests
        )
        @given(st.lists(st.tuples(requests(), CALL_METADATA), min_size=10, max_size=20))
        def fuzz(calls):
            for (method, request), metadata in calls:
                send(stub, tally, method, request, metadata)

        started = time.monotonic()
        while tally.total < at_least:  # (each run draws new requests: hypothesis keeps no database here)
            fuzz()
        elapsed = time.monotonic() - started
        # Afterwards the server still serves normal requests.
        kbs = stub.ListKnowledgeBases(pb.ListKnowledgeBasesRequest(), metadata=AUTH, timeout=CALL_TIMEOUT)
        assert "docs" in [kb.name for kb in kbs.knowledge_bases]
        answer = stub.Ask(
            pb.AskRequest(question="How do I install quillstack?", knowledge_base="docs"),
            metadata=AUTH,
            timeout=CALL_TIMEOUT,
        )
        assert "pip install quillstack" in answer.text
        job = stub.StartCrawl(
            pb.StartCrawlRequest(url="https://docs.example.com/", knowledge_base="after"),
            metadata=AUTH,
            timeout=CALL_TIMEOUT,
        )
        tally.job_ids.append(job.id)
        assert stub.GetJob(pb.GetJobRequest(job_id=job.id), metadata=AUTH).state == pb.JOB_STATE_QUEUED
        cancelled = cancel_fuzzed_jobs(stub, tally)
        channel.close()
        # Nothing left running: every job the fuzzer created is cancelled (and no worker ever saw one).
        assert all(j.state.terminal for j in services.jobs.list(page_size=500)[0])
    summary = {
        "requests": tally.total,
        "seconds": round(elapsed, 1),
        "codes": dict(tally.codes.most_common()),
        "per_method": dict(tally.per_method.most_common()),
        "jobs_created_then_cancelled": cancelled,
        "samples": tally.samples,
    }
    print("fuzz summary:", json.dumps(summary))
    if path := os.environ.get("RAGCORD_FUZZ_SUMMARY"):
        with open(path, "a") as out:
            out.write(json.dumps(summary) + "\n")
    assert not tally.bad, "\n".join(tally.bad)
    return tally


def test_fuzzed_requests_get_clear_statuses_and_the_server_keeps_serving(make_settings):
    tally = run_fuzz(make_settings, examples=60, at_least=600)
    assert tally.total >= 600


@pytest.mark.slow
def test_ten_thousand_fuzzed_requests(make_settings):
    tally = run_fuzz(make_settings, examples=720, at_least=10_000)
    assert tally.total >= 10_000
