"""Answer quality on real documentation: the suite in tests/quality/ against the real processes.

Each site (a Debian doc package) is served on loopback, crawled through the admin API by `ragcord serve`
(admin server + Dramatiq workers, default settings: extractive answerer, local embedder), then every question
is asked through `Ask`. Figures: hit@1, hit@5, MRR, key term in the answer, follow-ups, refusals, answer
fragments, and a naive page-level BM25 baseline over the crawled pages. Writes docs/quality.md and
docs/quality.json (the previous json gives the change column). Quality figures depend only on the settings
and the data; timings are reported apart because the machines are shared.

    python -m bench.quality                       # full run, writes docs/quality.{md,json}
    python -m bench.quality --sites flask,glib --limit 5   # quick run, prints Markdown only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import grpc
import redis

from ragcord import evaluation
from rpc.v1 import admin_pb2 as pb
from rpc.v1 import admin_pb2_grpc
from tests.e2e.procs import Grpcurl, Service, wait_healthy
from tests.harness import free_port
from tests.quality.suite import OUTSIDE, Site, Suite, check_counts, load_suite, page_path, page_text
from tests.quality.suite import validate as validate_suite
from tests.sitekit import FixtureSite

log = logging.getLogger(__name__)

REDIS_URL = os.environ.get("RAGCORD_REDIS_URL", "redis://127.0.0.1:6379/0")
DOCS = Path(__file__).resolve().parents[1] / "docs"
CRAWL_TIMEOUT_S = 3600
ASK_TIMEOUT_S = 120
TERMINAL = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}

# Figures in the order the tables show them, with their labels.
FIGURES = {
    "hit1": "hit@1",
    "hit5": "hit@5",
    "mrr": "MRR",
    "page_hit5": "page hit@5",
    "key_term": "key term",
    "usable": "usable",
    "followup_hit5": "follow-up hit@5",
    "followup_key_term": "follow-up key term",
    "wrongly_refused": "in-domain refused",
    "off_topic_refused": "off-topic refused",
    "missing_refused": "missing refused",
    "followup_missing_refused": "follow-up missing refused",
    "fragment_answers": "answers with fragments",
    "bm25_hit1": "BM25 hit@1",
    "bm25_hit5": "BM25 hit@5",
    "bm25_followup_hit5": "BM25 follow-up hit@5",
}
# For these a lower figure is better (the change column says so).
LOWER_IS_BETTER = {"wrongly_refused", "fragment_answers"}


# --- scoring (pure functions: the future floor test and unit tests can call them) ---------------------


def normalise_page(path: str) -> str:
    """A site-relative page path: no leading slash, unquoted, directory -> its index.html."""
    path = unquote(path).lstrip("/")
    return path + "index.html" if not path or path.endswith("/") else path


def first_hit_rank(urls: Sequence[str], site_base: str, expected: Iterable[str]) -> int | None:
    """1-based rank of the first cited URL that is an expected page of the site (and section, when named):
    the suite's pages are paths under the site, scored by `ragcord eval`'s own rule."""
    return evaluation.rank([urljoin(site_base + "/", e) for e in expected], urls)


def first_quote(text: str) -> str:
    """The answer's first passage: the first paragraph (a quote with its heading line, or a code block)."""
    parts = answer_parts(text)
    return parts[0] if parts else ""


def is_usable(answer: str, found: bool, terms: Iterable[str]) -> bool:
    """The rule for *usable*: the answer's first passage alone names the command, function, setting or
    statement that answers (one of the question's key terms); a reader who stops there can act."""
    return found and evaluation.has_key_term(terms, first_quote(answer)) is True


def answer_parts(text: str) -> list[str]:
    """The answer's paragraphs: split on blank lines, except inside a code fence."""
    parts: list[str] = []
    current: list[str] = []
    in_fence = False
    for line in text.split("\n"):
        if line.count("```") % 2:  # fences glued to prose (`text: ```python`) count too
            in_fence = not in_fence
        if not line.strip() and not in_fence:
            if current:
                parts.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        parts.append("\n".join(current))
    return parts


_CITATION_TAIL = re.compile(r"(?:\s*\[\d+\])+\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s")
_INTRO = re.compile(r"^\*\*[^*]+\*\*(?:\s*\[\d+\])*:?$")
_CLOSERS = "\"')]}’”»*`"


def is_fragment(part: str) -> bool:
    """A part that starts mid-sentence (lowercase word, not a list item or code) or is cut off."""
    lines = part.strip().split("\n")
    if len(lines) > 1 and _INTRO.match(lines[0].strip()):
        lines = lines[1:]  # the quote's intro, "**Page › Section**", is a label, not a sentence
    text = _CITATION_TAIL.sub("", "\n".join(lines)).strip()
    if not text:
        return False
    lines = text.split("\n")
    if text.count("```") % 2:
        return True  # a code block without its closing fence
    first = lines[0].strip()
    table = len(lines) > 1 and " | " in first and " | " in lines[1]  # rows as `cell | cell` lines
    if not (first.startswith(("```", "#", "|", ">")) or _LIST_ITEM.match(first) or table):
        word = first.split()[0].rstrip(",;:")
        if word[:1].islower() and word.isalpha():
            return True
    last = lines[-1].strip()
    if last.startswith(("```", "|", "#")) or last.endswith("```") or _LIST_ITEM.match(last):
        return False
    if len(lines) > 1 and " | " in last and " | " in lines[-2]:
        return False  # the last row of a table whose rows are `cell | cell` lines
    if last.endswith("…"):
        return True
    return not last.rstrip(_CLOSERS).endswith((".", "!", "?"))


def count_fragments(text: str) -> int:
    return sum(is_fragment(p) for p in answer_parts(text))


# --- the naive baseline

_TOKEN = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class BM25:
    """Okapi BM25 over whole pages: what a keyword search box without any chunking would find."""

    def __init__(self, pages: dict[str, str], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = {name: Counter(tokens(text)) for name, text in sorted(pages.items())}
        self.lengths = {name: sum(c.values()) for name, c in self.docs.items()}
        self.avg = statistics.fmean(self.lengths.values()) if self.docs else 0.0
        df: Counter[str] = Counter()
        for counts in self.docs.values():
            df.update(counts.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}

    def rank(self, query: str, k: int = 5) -> list[str]:
        terms = [t for t in dict.fromkeys(tokens(query)) if t in self.idf]
        scores = []
        for name, counts in self.docs.items():
            norm = self.k1 * (1 - self.b + self.b * self.lengths[name] / self.avg)
            score = sum(
                self.idf[t] * counts[t] * (self.k1 + 1) / (counts[t] + norm) for t in terms if t in counts
            )
            if score > 0:
                scores.append((-score, name))
        return [name for _, name in sorted(scores)[:k]]


def baseline_rank(bm25: BM25, query: str, expected: Iterable[str]) -> int | None:
    wanted = {normalise_page(page_path(e)) for e in expected}
    for rank, name in enumerate(bm25.rank(query), start=1):
        if name in wanted:
            return rank
    return None


# --- results


@dataclass
class CrawlResult:
    site: str
    state: str
    pages: int
    failed: int
    skipped: int
    chunks: int
    seconds: float
    failures: list[str] = field(default_factory=list)  # "url: reason" of each failed page
    base_url: str = ""  # where the site was served in that run
    pages_indexed: list[str] = field(default_factory=list)  # site-relative paths, from ListSources


@dataclass
class ItemResult:
    """One scored question (for a conversation: its second turn)."""

    id: str
    kind: str  # question | followup | off_topic | missing | missing_followup
    site: str
    question: str
    found: bool
    citations: list[str]
    rank: int | None = None  # first citation matching an expected page (sections count when named)
    page_rank: int | None = None  # the same, #fragments ignored
    key_term: bool | None = None
    usable: bool | None = None  # the first passage holds a key term (is_usable)
    fragments: int = 0
    baseline_rank: int | None = None
    seconds: float = 0.0
    text: str = ""  # the answer as returned, for reading what went wrong
    expected_indexed: bool | None = None  # whether the crawl indexed any expected page (None: unknown)


@dataclass
class Results:
    settings: dict[str, str]
    crawls: list[CrawlResult] = field(default_factory=list)
    items: list[ItemResult] = field(default_factory=list)
    ask_seconds: float = 0.0
    asks: int = 0

    def figures(self, site: str | None = None, sites: set[str] | None = None) -> dict[str, float | None]:
        """The suite's figures for one site, some `sites`, or all, each a share in [0, 1] (MRR too); None
        if no items."""
        items = [
            i for i in self.items if (site is None or i.site == site) and (sites is None or i.site in sites)
        ]
        by_kind = {
            k: [i for i in items if i.kind == k]
            for k in ("question", "followup", "off_topic", "missing", "missing_followup")
        }
        singles, followups = by_kind["question"], by_kind["followup"]
        in_domain = singles + followups
        found = [i for i in items if i.found]

        def share(values: list[bool]) -> float | None:
            return round(sum(values) / len(values), 3) if values else None

        return {
            "hit1": share([i.rank == 1 for i in singles]),
            "hit5": share([i.rank is not None and i.rank <= 5 for i in singles]),
            "mrr": round(statistics.fmean(1 / i.rank if i.rank else 0.0 for i in singles), 3)
            if singles
            else None,
            "page_hit5": share([i.page_rank is not None and i.page_rank <= 5 for i in singles]),
            "key_term": share([bool(i.key_term) for i in singles]),
            "usable": share([bool(i.usable) for i in singles]),
            "followup_hit5": share([i.rank is not None and i.rank <= 5 for i in followups]),
            "followup_key_term": share([bool(i.key_term) for i in followups]),
            "wrongly_refused": share([not i.found for i in in_domain]),
            "off_topic_refused": share([not i.found for i in by_kind["off_topic"]]),
            "missing_refused": share([not i.found for i in by_kind["missing"]]),
            "followup_missing_refused": share([not i.found for i in by_kind["missing_followup"]]),
            "fragment_answers": share([i.fragments > 0 for i in found]),
            "bm25_hit1": share([i.baseline_rank == 1 for i in singles]),
            "bm25_hit5": share([i.baseline_rank is not None for i in singles]),
            "bm25_followup_hit5": share([i.baseline_rank is not None for i in followups]),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Results:
        """A run read back from quality.json, to score it again after the questions changed."""
        fields = set(CrawlResult.__dataclass_fields__)
        results = cls(
            settings=data["settings"],
            crawls=[CrawlResult(**{k: v for k, v in c.items() if k in fields}) for c in data["crawls"]],
            items=[ItemResult(**i) for i in data["items"]],
            ask_seconds=data["timing"]["ask_seconds"],
            asks=data["timing"]["asks"],
        )
        return results

    def to_json(self) -> dict[str, Any]:
        sites = sorted({i.site for i in self.items} | {c.site for c in self.crawls})
        never = set(filter(None, self.settings.get("never_tuned", "").split(",")))
        groups = {}
        if never:
            groups = {
                "tuned on": self.figures(sites=set(sites) - never),
                "never tuned on": self.figures(sites=never),
            }
        return {
            "settings": self.settings,
            "figures": {
                "overall": self.figures(),
                "groups": groups,
                "sites": {s: self.figures(s) for s in sites},
            },
            "counts": dict(Counter(i.kind for i in self.items)),
            "crawls": [asdict(c) for c in self.crawls],
            "timing": {
                "crawl_seconds": round(sum(c.seconds for c in self.crawls), 1),
                "chunks": sum(c.chunks for c in self.crawls),
                "ask_seconds": round(self.ask_seconds, 1),
                "asks": self.asks,
            },
            "items": [{**asdict(i), "seconds": round(i.seconds, 3)} for i in self.items],
        }


# --- running


class Deployment:
    """`ragcord serve` (admin API + workers) with its own key prefix and data dir, and a client for it."""

    def __init__(self, workdir: Path, redis_url: str, prefix: str, *, keep: bool = False) -> None:
        self.prefix = prefix
        self.keep = keep  # leave the knowledge bases (Redis keys, data dir) for the next run
        self.redis_url = redis_url
        self.address = f"127.0.0.1:{free_port()}"
        self.token = secrets.token_hex(16)
        env = {
            "RAGCORD_REDIS_URL": redis_url,
            "RAGCORD_KEY_PREFIX": prefix,
            "RAGCORD_DATA_DIR": str(workdir / "data"),
            "RAGCORD_ALLOW_PRIVATE_NETWORKS": "true",
            "RAGCORD_GRPC_ADDRESS": self.address,
            "RAGCORD_ADMIN_TOKEN": self.token,
            # Off so this run cannot collide with another process's metrics port.
            "RAGCORD_METRICS_ADDRESS": "",
            "RAGCORD_WORKER_METRICS_PORT": "0",
        }
        self.service = Service(["serve"], env, workdir, workdir / "serve.log")
        self.channel: grpc.Channel | None = None

    def __enter__(self) -> Deployment:
        try:
            wait_healthy(Grpcurl(self.address, self.token), self.service, timeout=180)
        except BaseException:
            self.close()
            raise
        self.channel = grpc.insecure_channel(self.address)
        self.stub = admin_pb2_grpc.AdminServiceStub(self.channel)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        code = self.service.stop()
        if code:
            log.warning("ragcord serve exited %s:\n%s", code, self.service.tail())
        if self.keep:
            return
        client = redis.Redis.from_url(self.redis_url)
        keys = list(client.scan_iter(match=f"{self.prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])

    def crawl(self, site: Site, base_url: str, knowledge_base: str) -> CrawlResult:
        started = time.perf_counter()
        job = self.stub.StartCrawl(
            pb.StartCrawlRequest(
                url=f"{base_url}/{site.seed}",
                knowledge_base=knowledge_base,
                max_pages=site.max_pages,
                include_patterns=list(site.include),
                exclude_patterns=list(site.exclude),
            ),
            metadata=self.metadata,
        )
        final = job
        failures: list[str] = []
        for event in self.stub.WatchJob(
            pb.WatchJobRequest(job_id=job.id), metadata=self.metadata, timeout=CRAWL_TIMEOUT_S
        ):
            final = event.job
            if event.kind == pb.JOB_EVENT_KIND_PAGE_FAILED:
                failures.append(f"{event.page_url}: {event.detail}")
            if final.state in TERMINAL:
                break
        return CrawlResult(
            site=site.name,
            state=pb.JobState.Name(final.state).removeprefix("JOB_STATE_"),
            pages=final.pages_done,
            failed=final.pages_failed,
            skipped=final.pages_skipped,
            chunks=final.chunks_indexed,
            seconds=round(time.perf_counter() - started, 1),
            failures=failures,
        )

    def sources(self, knowledge_base: str) -> list[str]:
        response = self.stub.ListSources(
            pb.ListSourcesRequest(knowledge_base=knowledge_base), metadata=self.metadata
        )
        return sorted(s.url for s in response.sources)

    def ask(self, question: str, knowledge_base: str, conversation_id: str) -> tuple[pb.Answer, float]:
        started = time.perf_counter()
        answer = self.stub.Ask(
            pb.AskRequest(question=question, knowledge_base=knowledge_base, conversation_id=conversation_id),
            metadata=self.metadata,
            timeout=ASK_TIMEOUT_S,
        )
        return answer, time.perf_counter() - started


class InProcess:
    """A kept crawl asked in this process, without a server: a loop of seconds over search and answering.

    Same knowledge bases, same scoring; only the transport differs (AskService called directly, as the
    admin API's Ask does). For measuring a change to search or answering; crawl changes need a server run.
    `retune` swaps the extractive answerer's settings; searches are remembered, so asking again with other
    settings costs only the answering.
    """

    def __init__(self, workdir: Path, redis_url: str, prefix: str) -> None:
        from ragcord.answering.service import build_ask_service
        from ragcord.bootstrap import bootstrap
        from ragcord.settings import Settings

        settings = Settings(_env_file=None, redis_url=redis_url, key_prefix=prefix, data_dir=workdir / "data")
        self.services = bootstrap(settings)
        self.service = build_ask_service(self.services)
        self.service.retriever = _RememberedSearch(self.service.retriever)  # type: ignore[assignment]
        self.base_answerer = self.service.answerer

    def retune(self, tuning: Any) -> None:
        """Answer with these AnswerTuning values from now on (the extractive answerer only)."""
        from ragcord.answering.extractive import ExtractiveAnswerer

        embedder = self.services.embedder if self.services.embedder.dim is not None else None
        self.service.answerer = ExtractiveAnswerer(embedder=embedder, tuning=tuning)

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.services.close()

    def ask(self, question: str, knowledge_base: str, conversation_id: str) -> tuple[Any, float]:
        started = time.perf_counter()
        answer = self.service.ask(question, knowledge_base=knowledge_base, conversation_id=conversation_id)
        return answer, time.perf_counter() - started


class _RememberedSearch:
    """The retriever, its results remembered per (knowledge base, query, k, options): a kept crawl does not
    change."""

    def __init__(self, retriever: Any) -> None:
        self.retriever = retriever
        self.seen: dict[tuple[Any, ...], Any] = {}

    def search(self, knowledge_base: str, query: str, k: int = 5, **options: Any) -> Any:
        key = (knowledge_base, query, k, *sorted(options.items()))
        if key not in self.seen:
            self.seen[key] = self.retriever.search(knowledge_base, query, k=k, **options)
        return list(self.seen[key])


def _kb(site: str) -> str:
    return f"quality-{site}"


def _citations(answer: Any) -> list[str]:  # pb.Answer, or answering.types.Answer in process
    return [c.url for c in sorted(answer.citations, key=lambda c: c.number)]


def _crawled_pages(base_url: str, urls: list[str]) -> list[str]:
    """Site-relative paths of the pages the crawl indexed."""
    return sorted({normalise_page(urlsplit(u).path) for u in urls if u.startswith(base_url)})


def _ask_site(deployment: Deployment | InProcess, suite: Suite, site: Site, run: str) -> list[ItemResult]:
    """Ask every item of `site` (both turns of a conversation, in one conversation); scored later."""
    kb = _kb(site.name)
    out: list[ItemResult] = []

    def asked(item_id: str, kind: str, question: str, seconds: float = 0.0) -> ItemResult:
        answer, took = deployment.ask(question, kb, f"{run}-{item_id}")
        return ItemResult(
            id=item_id,
            kind=kind,
            site=site.name,
            question=question,
            found=answer.found,
            citations=_citations(answer),
            seconds=seconds + took,
            text=answer.text,
        )

    out += [asked(q.id, "question", q.question) for q in suite.questions if q.site == site.name]
    for c in (c for c in suite.conversations if c.site == site.name):
        _, first_seconds = deployment.ask(c.first, kb, f"{run}-{c.id}")
        out.append(asked(c.id, "followup", c.question, first_seconds))
    out += [asked(o.id, "off_topic", o.question) for o in suite.off_topic if o.site == site.name]
    for m in (m for m in suite.missing if m.site == site.name):
        if not m.first:
            out.append(asked(m.id, "missing", m.question))
            continue
        _, first_seconds = deployment.ask(m.first, kb, f"{run}-{m.id}")
        out.append(asked(m.id, "missing_followup", m.question, first_seconds))
    return out


def score(results: Results, suite: Suite) -> None:
    """Rank, key term and baseline of every in-domain item against the suite's expectations, in place."""
    expectations = {q.id: (q.expected, q.key_terms, q.question) for q in suite.questions}
    expectations |= {c.id: (c.expected, c.key_terms, f"{c.first} {c.question}") for c in suite.conversations}
    crawls = {c.site: c for c in results.crawls}
    baselines = {
        name: BM25({p: page_text(site.file(p)) for p in crawls[name].pages_indexed if site.file(p).is_file()})
        for name, site in suite.sites.items()
        if name in crawls and crawls[name].pages_indexed
    }
    for item in results.items:
        if item.text:
            item.fragments = count_fragments(item.text) if item.found else 0
        if item.kind not in ("question", "followup") or item.id not in expectations:
            continue
        expected, terms, query = expectations[item.id]
        base = crawls[item.site].base_url
        item.rank = first_hit_rank(item.citations, base, expected)
        item.page_rank = first_hit_rank(item.citations, base, [page_path(e) for e in expected])
        if item.text:
            item.key_term = evaluation.has_key_term(terms, item.text)
        item.usable = is_usable(item.text, item.found, terms)
        indexed = set(crawls[item.site].pages_indexed)
        if indexed:
            item.expected_indexed = any(normalise_page(page_path(e)) in indexed for e in expected)
        if item.site in baselines:  # else keep the stored rank: the crawled pages are not known
            item.baseline_rank = baseline_rank(baselines[item.site], query, expected)


def run_suite(
    suite: Suite,
    *,
    redis_url: str = REDIS_URL,
    progress: Callable[[str], None] = log.info,
    keep: Path | None = None,
    in_process: bool = False,
) -> Results:
    """Serve, crawl and ask the whole `suite`; the floor test and `main` both call this.

    With `keep`, the crawls live in that folder (and under a key prefix it records) and later runs with the
    same folder ask again without crawling: for measuring a change to search or answering, not to crawling.
    """
    state = keep / "crawls.json" if keep is not None else None
    if in_process and (state is None or not state.exists()):
        raise ValueError("asking in process needs a kept crawl: run once with --keep DIR first")
    problems = validate_suite(suite)
    if problems:
        raise ValueError("the quality suite is not valid:\n" + "\n".join(problems))
    kept = json.loads(state.read_text()) if state is not None and state.exists() else None
    prefix = kept["prefix"] if kept else f"quality{uuid.uuid4().hex[:8]}"
    never = ",".join(name for name, site in suite.sites.items() if not site.tuned_on)
    results = Results(
        settings={
            "answerer": "extractive",
            "embedder": "local",
            "defaults": "ragcord serve",
            "never_tuned": never,
        }
    )
    with contextlib.ExitStack() as stack:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            workdir = keep
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ragcord-quality-")))
        deployment: Deployment | InProcess
        if in_process:
            deployment = stack.enter_context(InProcess(workdir, redis_url, prefix))
        else:
            deployment = stack.enter_context(Deployment(workdir, redis_url, prefix, keep=keep is not None))
        if kept:
            results.crawls = [CrawlResult(**c) for c in kept["crawls"] if c["site"] in suite.sites]
            progress(f"asking again over the crawls kept in {keep} (delete it to crawl anew)")
        else:
            servers = {
                name: stack.enter_context(FixtureSite(root=site.root)) for name, site in suite.sites.items()
            }
            bases = {name: server.base_url.rstrip("/") for name, server in servers.items()}
            for name, site in suite.sites.items():
                crawl = deployment.crawl(site, bases[name], _kb(name))
                crawl.base_url = bases[name]
                results.crawls.append(crawl)
                progress(
                    f"crawled {name}: {crawl.state}, {crawl.pages} pages ({crawl.failed} failed), "
                    f"{crawl.chunks} chunks in {crawl.seconds:.1f}s"
                )
            for crawl in results.crawls:
                crawl.pages_indexed = _crawled_pages(crawl.base_url, deployment.sources(_kb(crawl.site)))
            if state is not None:
                crawls = [asdict(c) for c in results.crawls]
                state.write_text(json.dumps({"prefix": prefix, "crawls": crawls}, indent=1))
        run = f"run{uuid.uuid4().hex[:8]}"  # conversations are new in every run, kept crawls or not
        started = time.perf_counter()
        for name, site in suite.sites.items():
            items = _ask_site(deployment, suite, site, run)
            results.items += items
            progress(f"asked {name}: {len(items)} items")
        results.ask_seconds = time.perf_counter() - started
        results.asks = sum(2 if i.kind in ("followup", "missing_followup") else 1 for i in results.items)
    score(results, suite)
    return results


# --- leave-one-site-out

# The main numbers re-chosen per left-out site: each value asked over the sites tuned on (in process, over a
# kept crawl), one setting at a time around the defaults.
LOSO_GRID: dict[str, tuple[float, ...]] = {
    "min_similarity": (0.25, 0.3, 0.35, 0.4, 0.45),
    "min_quote_words": (2, 4, 8),
    "follow_up_own_coverage": (0.0, 0.25, 0.5, 0.75),  # 0: the follow-up rule off
    "contents_item_words": (0, 8, 12, 16),  # 0: no table of contents, the not-found rule of issue 21 off
    "contents_items": (2, 3, 4, 6),
}


def objective(items: list[ItemResult]) -> float:
    """What a setting is chosen for: in-domain answered with a right page in the top 5, the first quote
    usable, out-of-scope refused; the mean of the three shares (a missing share counts as 0)."""
    in_domain = [i for i in items if i.kind in ("question", "followup")]
    singles = [i for i in items if i.kind == "question"]
    refuse = [i for i in items if i.kind in ("off_topic", "missing", "missing_followup")]

    def share(values: list[bool]) -> float:
        return sum(values) / len(values) if values else 0.0

    return (
        share([i.found and i.rank is not None and i.rank <= 5 for i in in_domain])
        + share([bool(i.usable) for i in singles])
        + share([not i.found for i in refuse])
    ) / 3


def objective_with_key_term(items: list[ItemResult]) -> float:
    """`objective` with a fourth share: in-domain questions whose answer holds a key term anywhere (for
    settings that decide what is quoted rather than what opens the answer)."""
    singles = [i for i in items if i.kind == "question"]
    key_term = sum(bool(i.key_term) for i in singles) / len(singles) if singles else 0.0
    return (3 * objective(items) + key_term) / 4


def leave_one_site_out(
    suite: Suite,
    keep: Path,
    *,
    redis_url: str = REDIS_URL,
    grid: dict[str, tuple[float, ...]] | None = None,
    progress: Callable[[str], None] = log.info,
    objective: Callable[[list[ItemResult]], float] = objective,
) -> dict[str, Any]:
    """For each site tuned on: choose each grid setting on the other tuned sites, freeze, measure it.

    Sites with `tuned_on: false` are never used for choosing; their figures (at the defaults) are
    leave-one-site-out by construction. Needs a crawl kept with --keep.
    """
    from ragcord.answering.tuning import DEFAULT_TUNING

    grid = grid or LOSO_GRID
    kept = json.loads((keep / "crawls.json").read_text())
    crawls = [CrawlResult(**c) for c in kept["crawls"] if c["site"] in suite.sites]
    tuned = [name for name, site in suite.sites.items() if site.tuned_on]
    runs: dict[tuple[str, float], list[ItemResult]] = {}
    with InProcess(keep, redis_url, kept["prefix"]) as deployment:

        def ask(tuning: Any, names: list[str]) -> list[ItemResult]:
            deployment.retune(tuning)
            results = Results(settings={}, crawls=crawls)
            run = f"loso{uuid.uuid4().hex[:8]}"
            for name in names:
                results.items += _ask_site(deployment, suite, suite.sites[name], run)
            score(results, suite)
            return results.items

        for setting, values in grid.items():
            for value in values:
                runs[(setting, value)] = ask(DEFAULT_TUNING.with_values(**{setting: value}), tuned)
                progress(f"asked the tuned sites with {setting}={value}")
        chosen: dict[str, dict[str, float]] = {}
        on_all: dict[str, float] = {}  # each setting chosen on every tuned site: the default to ship
        for setting, values in grid.items():
            default = getattr(DEFAULT_TUNING, setting)
            scores = {v: objective(runs[(setting, v)]) for v in values}
            best_all = max(scores.values())
            on_all[setting] = min(
                (v for v in values if scores[v] >= best_all - 1e-9), key=lambda v: abs(v - default)
            )
        per_value = {
            setting: {
                str(v): {
                    s: round(objective([i for i in runs[(setting, v)] if i.site == s]), 3) for s in tuned
                }
                for v in values
            }
            for setting, values in grid.items()
        }
        left_out: list[ItemResult] = []
        for site in tuned:
            picks = {}
            for setting, values in grid.items():
                default = getattr(DEFAULT_TUNING, setting)

                def others(value: float, setting: str = setting, site: str = site) -> float:
                    return objective([i for i in runs[(setting, value)] if i.site != site])

                best = max(others(v) for v in values)
                # Ties go to the default, then to the value nearest it: no change without a gain.
                picks[setting] = min(
                    (v for v in values if others(v) >= best - 1e-9), key=lambda v: abs(v - default)
                )
            chosen[site] = picks
            left_out += ask(DEFAULT_TUNING.with_values(**picks), [site])
            progress(f"{site} left out: chosen on the others {picks}")
    results = Results(settings={"loso": "true"}, crawls=crawls, items=left_out)
    return {
        "grid": {k: list(v) for k, v in grid.items()},
        "chosen": chosen,
        "chosen_on_all": on_all,
        "objective_per_value": per_value,
        "figures": {"overall": results.figures(), "sites": {s: results.figures(s) for s in tuned}},
        "objective": {s: round(objective([i for i in left_out if i.site == s]), 3) for s in tuned},
    }


def render_loso(data: dict[str, Any]) -> str:
    keys = [
        "hit1",
        "hit5",
        "key_term",
        "usable",
        "followup_hit5",
        "wrongly_refused",
        "missing_refused",
        "followup_missing_refused",
    ]
    lines = [
        "| left-out site | chosen on the others | " + " | ".join(FIGURES[k] for k in keys) + " |",
        "|---" * (len(keys) + 2) + "|",
    ]
    for site, figures in data["figures"]["sites"].items():
        picks = ", ".join(f"{k}={v}" for k, v in data["chosen"][site].items())
        lines.append(f"| {site} | {picks} | " + " | ".join(_cell(figures.get(k)) for k in keys) + " |")
    overall = data["figures"]["overall"]
    lines.append("| **all five** | | " + " | ".join(_cell(overall.get(k)) for k in keys) + " |")
    lines.append("")
    lines.append("Chosen on all five: " + ", ".join(f"{k}={v}" for k, v in data["chosen_on_all"].items()))
    return "\n".join(lines) + "\n"


# --- report


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _change(key: str, now: float | None, before: float | None) -> str:
    if now is None or before is None:
        return "new" if before is None and now is not None else "–"
    delta = now - before
    if abs(delta) < 0.005:
        return "="
    better = delta < 0 if key in LOWER_IS_BETTER else delta > 0
    return f"{delta:+.2f} {'better' if better else 'worse'}"


def render_markdown(data: dict[str, Any], previous: dict[str, Any] | None) -> str:
    overall = data["figures"]["overall"]
    before = (previous or {}).get("figures", {}).get("overall", {})
    sites = data["figures"]["sites"]
    counts = data["counts"]
    held_out = data["settings"].get("questions") == "heldout.yaml"
    outside = data["settings"].get("questions") == "outside"
    lines = [
        "# Answer quality on real documentation"
        + (": the held-out set" if held_out else ": the outside check" if outside else ""),
        "",
        *(
            [
                "Questions no change was tuned on (`tests/quality/heldout.yaml`, "
                "`python -m bench.quality --held-out`); the tuning suite's report is `docs/quality.md`.",
                "",
            ]
            if held_out
            else []
        ),
        *(
            [
                "A site outside the suite, never tuned on and never to be (`tests/quality/outside/`, "
                "`python -m bench.quality --outside`): how answers hold on documentation nobody looked at "
                "while changing the answering path. The tuning suite's report is `docs/quality.md`.",
                "",
            ]
            if outside
            else []
        ),
        "Generated by `python -m bench.quality` (suite: `tests/quality/`). Debian's doc packages served on "
        "loopback, crawled and asked through the admin API of `ragcord serve` with default settings "
        f"({data['settings']['answerer']} answerer, {data['settings']['embedder']} embedder). "
        f"Items: {counts.get('question', 0)} questions, {counts.get('followup', 0)} two-turn conversations "
        f"(second turn scored), {counts.get('off_topic', 0)} off-topic, {counts.get('missing', 0)} whose "
        "page is left out of the crawl.",
        "",
        "A hit is a citation of an expected page; when the question names a section (#anchor) only a "
        "citation of that section counts, while *page hit@5* ignores anchors. *Key term*: the answer text "
        "contains the command, function or option that answers. *Fragments*: share of answers with a part "
        "that starts mid-sentence or is cut off. The BM25 baseline ranks whole pages (the crawled ones) by "
        "the question's words; for follow-ups it gets both turns.",
        "",
        "## Overall",
        "",
        "| figure | now | before | change |",
        "|---|---|---|---|",
    ]
    for key, label in FIGURES.items():
        lines.append(
            f"| {label} | {_cell(overall.get(key))} | {_cell(before.get(key))} "
            f"| {_change(key, overall.get(key), before.get(key))} |"
        )
    keys = list(FIGURES)
    groups = data["figures"].get("groups") or {}
    if groups:
        lines += [
            "",
            "## Sites tuned on, and sites never tuned on",
            "",
            "No rule or number of the answering path was chosen on the sites marked `tuned_on: false` in "
            "`tests/quality/sites.yaml`: their figures are leave-one-site-out by construction. For the five "
            "tuned sites, `python -m bench.quality --keep DIR --loso` re-chooses the main settings on the "
            "other four and measures the fifth (docs/quality-log.md).",
            "",
            "| sites | " + " | ".join(FIGURES[k] for k in keys) + " |",
            "|---" * (len(keys) + 1) + "|",
        ]
        for group, figures in groups.items():
            lines.append(f"| {group} | " + " | ".join(_cell(figures.get(k)) for k in keys) + " |")
    lines += [
        "",
        "## Per site",
        "",
        "| site | " + " | ".join(FIGURES[k] for k in keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for site, figures in sites.items():
        lines.append(f"| {site} | " + " | ".join(_cell(figures.get(k)) for k in keys) + " |")
    timing = data["timing"]
    lines += [
        "",
        "## Crawls and time",
        "",
        "| site | state | pages | failed | chunks | seconds | chunks/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in data["crawls"]:
        rate = c["chunks"] / c["seconds"] if c["seconds"] else 0.0
        lines.append(
            f"| {c['site']} | {c['state']} | {c['pages']} | {c['failed']} | {c['chunks']} "
            f"| {c['seconds']:.1f} | {rate:.1f} |"
        )
    failures = [f"- {c['site']}: {f}" for c in data["crawls"] for f in c.get("failures", [])]
    if failures:
        lines += ["", "Failed pages:", "", *failures]
    lines += [
        "",
        f"Crawl: {timing['chunks']} chunks in {timing['crawl_seconds']:.0f} s. Questions: {timing['asks']} "
        f"Ask calls in {timing['ask_seconds']:.0f} s. (Timings vary with the machine's load; the figures "
        "above do not.)",
        "",
        "## In-domain misses (no expected page among the citations)",
        "",
        "| id | question | refused | first citation | expected page indexed |",
        "|---|---|---|---|---|",
    ]
    indexed_label = {True: "yes", False: "**no**", None: "?"}
    for item in data["items"]:
        if item["kind"] in ("question", "followup") and item["page_rank"] is None:
            first = urlsplit(item["citations"][0]).path if item["citations"] else "–"
            question = item["question"].replace("|", "\\|")
            lines.append(
                f"| {item['id']} | {question} | {'yes' if not item['found'] else 'no'} | {first} "
                f"| {indexed_label[item.get('expected_indexed')]} |"
            )
    answered = [
        i["id"]
        for i in data["items"]
        if i["kind"] in ("off_topic", "missing", "missing_followup") and i["found"]
    ]
    lines += [
        "",
        "Off-topic or missing-page questions answered anyway: " + (", ".join(answered) or "none") + ".",
    ]
    return "\n".join(lines) + "\n"


def write_report(results: Results, out: Path) -> str:
    """Write quality.md and quality.json under `out` (reading the previous json first); returns the md."""
    data = results.to_json()
    previous_file = out / "quality.json"
    previous = json.loads(previous_file.read_text()) if previous_file.is_file() else None
    markdown = render_markdown(data, previous)
    out.mkdir(parents=True, exist_ok=True)
    previous_file.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    (out / "quality.md").write_text(markdown)
    return markdown


def rescore(source: Path, out: Path, suite: Suite) -> str:
    """Score the answers stored in `source` (a quality.json) again with the current questions; no crawl."""
    results = Results.from_json(json.loads(source.read_text()))
    ids = {i.id for i in suite.items()}
    results.items = [i for i in results.items if i.id in ids]  # questions removed since are not scored
    for crawl in results.crawls:
        site = suite.sites[crawl.site]
        if not crawl.base_url:  # written before runs kept it: every citation of a site has its origin
            cited = [u for i in results.items if i.site == crawl.site for u in i.citations]
            crawl.base_url = "{0.scheme}://{0.netloc}".format(urlsplit(cited[0])) if cited else ""
        if (
            not crawl.pages_indexed
        ):  # written before runs kept it: the scope's pages, if the crawl had them all
            failed = {normalise_page(urlsplit(f.split(": ", 1)[0]).path) for f in crawl.failures}
            scoped = [p for p in site.scoped_pages() if normalise_page(p) not in failed]
            if len(scoped) == crawl.pages:
                crawl.pages_indexed = scoped
    score(results, suite)
    return write_report(results, out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n")[0])
    parser.add_argument("--sites", help="comma-separated site names (default: all)")
    parser.add_argument("--limit", type=int, help="at most this many items of each kind per site")
    parser.add_argument("--out", type=Path, help="where quality.md/json go (default: docs/ for a full run)")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the crawls in DIR; a later run with the same DIR asks again without crawling",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="with --keep DIR of an earlier run: ask the kept crawl in this process, no server (seconds)",
    )
    parser.add_argument(
        "--held-out",
        action="store_true",
        help="ask tests/quality/heldout.yaml, the questions no change was tuned on (report: docs/heldout/)",
    )
    parser.add_argument(
        "--outside",
        action="store_true",
        help="crawl and ask tests/quality/outside/: a site outside the suite, never tuned on (report: "
        "docs/outside/)",
    )
    parser.add_argument(
        "--loso",
        action="store_true",
        help="with --keep DIR of an earlier run: re-choose the main settings leaving each tuned site out",
    )
    parser.add_argument(
        "--rescore",
        type=Path,
        metavar="JSON",
        help="score the answers stored in this quality.json again (after editing questions); no crawl",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.held_out and args.outside:
        raise SystemExit("--held-out and --outside are different question sets: give one")
    if args.outside:
        suite, docs = load_suite(OUTSIDE), DOCS / "outside"
    elif args.held_out:
        suite, docs = load_suite(questions="heldout.yaml"), DOCS / "heldout"
    else:
        suite, docs = load_suite(), DOCS
    if args.rescore:
        print(rescore(args.rescore, args.out or docs, suite))
        return
    if args.loso:
        if args.keep is None:
            raise SystemExit("--loso asks a kept crawl: give --keep DIR (of an earlier run)")
        data = leave_one_site_out(suite, args.keep)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "loso.json").write_text(json.dumps(data, indent=1) + "\n")
        print(render_loso(data))
        return
    partial = bool(args.sites or args.limit)
    if not partial and not (args.held_out or args.outside) and (problems := check_counts(suite)):
        raise SystemExit("the quality suite is too small:\n" + "\n".join(problems))
    if args.sites:
        names = set(args.sites.split(","))
        if unknown := names - set(suite.sites):
            raise SystemExit(f"unknown sites: {sorted(unknown)}; known: {sorted(suite.sites)}")
        suite = suite.only(sites=names)
    if args.limit:
        suite = suite.only(limit=args.limit)
    if args.in_process and args.keep is None:
        raise SystemExit("--in-process asks a kept crawl: give --keep DIR (of an earlier run)")
    try:
        results = run_suite(suite, keep=args.keep, in_process=args.in_process)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if args.held_out:
        results.settings["questions"] = "heldout.yaml"
    if args.outside:
        results.settings["questions"] = "outside"
    out = args.out or (None if partial or args.keep else docs)
    if out is None:
        print(render_markdown(results.to_json(), None))
        return
    write_report(results, out)
    print(summary(results, out))


def run(plots: Path) -> tuple[str, str]:
    """`make bench`: the tuning suite through `ragcord serve`, then the held-out questions over the same
    crawl in process; both reports are written (docs/quality.md, docs/heldout/quality.md), and summed up."""
    with tempfile.TemporaryDirectory(prefix="ragcord-quality-bench-") as keep:
        tuning = run_suite(load_suite(), keep=Path(keep))
        write_report(tuning, DOCS)
        held = run_suite(load_suite(questions="heldout.yaml"), keep=Path(keep), in_process=True)
        held.settings["questions"] = "heldout.yaml"
        write_report(held, DOCS / "heldout")
        prefix = json.loads((Path(keep) / "crawls.json").read_text())["prefix"]
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
    t, h = tuning.figures(), held.figures()
    markdown = summary(tuning, DOCS) + "\n\n" + summary(held, DOCS / "heldout") + "\n"
    line = (
        f"quality: hit1={t['hit1']:.2f} hit5={t['hit5']:.2f} key_term={t['key_term']:.2f} "
        f"heldout_hit1={h['hit1']:.2f} heldout_hit5={h['hit5']:.2f} heldout_key_term={h['key_term']:.2f}"
    )
    return markdown.lstrip("\n"), line


def _shown(path: Path) -> Path:
    """`path` relative to the repository when it is inside it (as docs/benchmarks.md names files)."""
    return path.resolve().relative_to(DOCS.parent) if path.resolve().is_relative_to(DOCS.parent) else path


def summary(results: Results, out: Path) -> str:
    """A few lines for docs/benchmarks.md (the whole report is in quality.md)."""
    f = results.figures()
    timing = results.to_json()["timing"]
    return (
        f"\n## Answer quality on real documentation ({_shown(out / 'quality.md')})\n\n"
        f"{len(results.items)} items over {len(results.crawls)} sites: hit@1 {_cell(f['hit1'])}, "
        f"hit@5 {_cell(f['hit5'])} (BM25 over whole pages {_cell(f['bm25_hit5'])}), key term "
        f"{_cell(f['key_term'])}, follow-up hit@5 {_cell(f['followup_hit5'])}, off-topic refused "
        f"{_cell(f['off_topic_refused'])}. Crawl {timing['chunks']} chunks in "
        f"{timing['crawl_seconds']:.0f} s, {timing['asks']} asks in {timing['ask_seconds']:.0f} s."
    )


if __name__ == "__main__":
    main()
