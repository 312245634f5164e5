"""Real documentation sites, crawled end to end: Debian's doc packages served on loopback, one per
site generator (Sphinx themes, DocBook, gtk-doc, Doxygen, Texinfo, Go's pages).

For each site the admin API and worker processes crawl it with no embedder, and the result is held
against what the files on disk say (tests.realsites.reach, independent of the crawler): the job ends
SUCCEEDED, at least 95% of the pages reachable from the seed are indexed, every page keeps its own
title, and no sampled chunk is navigation, sidebar, breadcrumb or footer text. Per-site figures go to
the file named by RAGCORD_REALSITES_REPORT (JSON, and markdown beside it).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pytest

from rpc.v1 import admin_pb2 as pb
from rpc.v1 import admin_pb2_grpc
from tests.conftest import CI
from tests.e2e.procs import Grpcurl, Service, wait_healthy
from tests.harness import free_port
from tests.realsites.catalog import SITES, Site
from tests.realsites.install import CannotInstall, install
from tests.realsites.reach import Reach, file_for, own_titles, page_key, reach
from tests.realsites.report import Report, SiteFigures, grouped
from tests.realsites.server import DocSite

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOKEN = "realsites-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
COVERAGE = 0.95
SAMPLE_CHUNKS = int(os.environ.get("RAGCORD_REALSITES_SAMPLE", "30")) or 10**9  # 0: every chunk
SHARED_TITLE_SHARE = 0.05  # of the pages; more than this under one title whose pages differ: a site name
TERMINAL = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}


@pytest.fixture(scope="session")
def install_error() -> str | None:
    """Install missing doc packages once; the error, if that was impossible."""
    try:
        install(SITES)
    except CannotInstall as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def report() -> Report:
    path = os.environ.get("RAGCORD_REALSITES_REPORT")
    return Report(Path(path) if path else None)


@pytest.fixture(scope="module")
def admin(base_env, workdir):
    """The admin API and a worker process (two processes, two threads each), no embedder."""
    address = f"127.0.0.1:{free_port()}"
    env = {
        **base_env,
        "RAGCORD_GRPC_ADDRESS": address,
        "RAGCORD_ADMIN_TOKEN": TOKEN,
        "RAGCORD_EMBEDDER": "none",
        "RAGCORD_WORKER_PROCESSES": "2",
        "RAGCORD_WORKER_THREADS": "2",
        "RAGCORD_FETCH_TIMEOUT_SECONDS": "20",
        "RAGCORD_EVENT_RETENTION": "100000",
        "RAGCORD_DATA_DIR": str(workdir / "realsites-data"),
        "RAGCORD_LOG_LEVEL": "WARNING",
    }
    rpc = Service(["rpc"], env, workdir, workdir / "realsites-rpc.log")
    worker = Service(["worker"], env, workdir, workdir / "realsites-worker.log")
    channel = grpc.insecure_channel(address)
    try:
        wait_healthy(Grpcurl(address, TOKEN), rpc)
        yield admin_pb2_grpc.AdminServiceStub(channel), worker
    finally:
        channel.close()
        for service in (rpc, worker):
            service.stop()


def site_root(site: Site, install_error: str | None) -> Path:
    root = site.root()
    if root is None:
        why = (
            f"{site.name}: {' or '.join(site.roots)} has no {site.seed} ({install_error or 'not installed'})"
        )
        if CI:
            pytest.fail(why)
        pytest.skip(why)
    return root


def crawl_to_the_end(stub, site: Site, url: str, kb: str, max_pages: int) -> tuple[pb.Job, float, bool]:
    """StartCrawl and poll until the job ends: (last state, seconds, ended); past the site's time budget
    the job is cancelled and `ended` is False."""
    started = time.monotonic()
    job = stub.StartCrawl(
        pb.StartCrawlRequest(
            url=url,
            knowledge_base=kb,
            max_pages=max_pages,
            max_depth=site.max_depth,
            include_patterns=list(site.include),
            exclude_patterns=list(site.exclude),
        ),
        metadata=AUTH,
        timeout=30,
    )
    deadline = started + site.minutes * 60
    while job.state not in TERMINAL:
        if time.monotonic() > deadline:
            stub.CancelJob(pb.CancelJobRequest(job_id=job.id), metadata=AUTH, timeout=30)
            return job, time.monotonic() - started, False
        time.sleep(0.5)
        job = stub.GetJob(pb.GetJobRequest(job_id=job.id), metadata=AUTH, timeout=30)
    return job, time.monotonic() - started, True


def page_outcomes(stub, job_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """(skipped, failed): page URL -> the reason the job's events give."""
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    for event in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=AUTH, timeout=120):
        if event.kind == pb.JOB_EVENT_KIND_PAGE_SKIPPED:
            skipped[event.page_url] = event.detail
        elif event.kind == pb.JOB_EVENT_KIND_PAGE_FAILED:
            failed[event.page_url] = event.detail
    return skipped, failed


def title_is_own(stored: str, owns: list[str], root_titles: Counter[str]) -> bool:
    """The stored title contains the page's own <title>, <h1> or front-matter title, or is a part of
    its <title> that few pages share (its own part, not the site's name)."""
    stored = " ".join(stored.split())
    if not stored or stored.startswith(("http://", "https://")):
        return False
    if any(own in stored for own in owns):
        return True
    sharing = sum(n for title, n in root_titles.items() if stored in title)
    return (
        bool(owns) and stored in owns[0] and sharing <= max(2, SHARED_TITLE_SHARE * sum(root_titles.values()))
    )


def check_titles(figures: SiteFigures, sources, root: Path, expected: Reach) -> None:
    owns = {path: own_titles(file_for(root, path).read_bytes()) for path in expected.pages}
    root_titles = Counter(t[0] for t in owns.values() if t)
    bad = []
    for source in sources:
        path = page_key(urlsplit(source.url).path)
        if path in owns and not title_is_own(source.title, owns[path], root_titles):
            bad.append(f"{path}: stored {source.title!r}, page says {owns[path][:2]}")
    figures.title_mismatches = len(bad)
    figures.title_examples = bad[:5]
    # One stored title over pages whose own <title>s differ: the site's name, not each page's.
    pages_by_title: dict[str, set[str]] = defaultdict(set)
    for source in sources:
        path = page_key(urlsplit(source.url).path)
        pages_by_title[source.title].add(owns[path][0] if owns.get(path) else path)
    if len(sources) > 1:
        title, differing = max(pages_by_title.items(), key=lambda item: len(item[1]))
        figures.title_collapse_share = len(differing) / len(sources)
        if len(differing) > max(2, SHARED_TITLE_SHARE * len(sources)):
            figures.failures.append(
                f"{len(differing)} pages with different <title>s are all stored as {title!r}"
            )
    if bad:
        figures.failures.append(f"{len(bad)} pages' titles are not their own, e.g. {bad[0]}")


def sample_chunks(stub, kb: str, sources, name: str) -> list[tuple[str, str]]:
    """Up to SAMPLE_CHUNKS (url, heading + text) spread over the pages, the same ones every run."""
    rng = random.Random(name)
    chosen = sorted(sources, key=lambda s: s.url)
    rng.shuffle(chosen)
    out: list[tuple[str, str]] = []
    per_page = max(1, -(-SAMPLE_CHUNKS // max(1, len(chosen))))
    for source in chosen:
        if len(out) >= SAMPLE_CHUNKS:
            break
        detail = stub.GetSource(
            pb.GetSourceRequest(knowledge_base=kb, url=source.url), metadata=AUTH, timeout=60
        )
        chunks = list(detail.chunks)
        for chunk in rng.sample(chunks, min(per_page, len(chunks), SAMPLE_CHUNKS - len(out))):
            out.append((source.url, f"{chunk.heading}\n{chunk.text}"))
    return out


def check_boilerplate(figures: SiteFigures, site: Site, chunks: list[tuple[str, str]]) -> None:
    figures.chunks_sampled = len(chunks)
    hits = []
    for url, text in chunks:
        for pattern in site.patterns:
            if match := pattern.search(text):
                start = max(0, match.start() - 40)
                context = " ".join(text[start : match.end() + 40].split())
                hits.append(f"{urlsplit(url).path}: /{pattern.pattern}/ in …{context}…")
                break
    figures.boilerplate_hits = len(hits)
    figures.boilerplate_examples = hits[:8]
    if hits:
        figures.failures.append(
            f"{len(hits)} of {len(chunks)} sampled chunks hold page furniture, e.g. {hits[0]}"
        )


@pytest.mark.parametrize(
    "site", [pytest.param(s, id=s.name, marks=pytest.mark.timeout(int(s.minutes * 60) + 180)) for s in SITES]
)
def test_a_real_documentation_site_is_indexed_page_by_page(site: Site, admin, install_error, report):
    stub, worker = admin
    root = site_root(site, install_error)
    expected = reach(root, site.seed, include=site.include, exclude=site.exclude, max_depth=site.max_depth)
    figures = SiteFigures(site=site.name, generator=site.generator, package=" ".join(site.packages))
    figures.in_scope, figures.link_targets = len(expected.pages), expected.link_targets
    kb = f"rs-{site.name}"
    try:
        with DocSite(root) as web:
            # Room for every link the crawler reserves (pages, other files, broken links): the cap never cuts.
            job, figures.seconds, ended = crawl_to_the_end(
                stub, site, web.url(site.seed), kb, expected.link_targets + 50
            )
        if not ended:
            figures.state, figures.indexed = "TIMED_OUT", job.pages_done
            figures.failures.append(f"the crawl did not end within {site.minutes:g} minutes")
            pytest.fail(
                f"{site.name}: the crawl did not end within {site.minutes:g} minutes; last state:\n{job}"
            )
        assert worker.alive(), f"the worker process died:\n{worker.tail()}"
        figures.state = pb.JobState.Name(job.state).removeprefix("JOB_STATE_")
        figures.indexed, figures.chunks = job.pages_done, job.chunks_indexed
        if job.state != pb.JOB_STATE_SUCCEEDED:
            figures.failures.append(f"job ended {figures.state}: {job.error}")

        skipped, failed = page_outcomes(stub, job.id)
        figures.skipped, figures.failed = grouped(list(skipped.values())), grouped(list(failed.values()))
        sources = list(
            stub.ListSources(pb.ListSourcesRequest(knowledge_base=kb), metadata=AUTH, timeout=60).sources
        )
        indexed_paths = {page_key(urlsplit(s.url).path) for s in sources}
        covered = indexed_paths & expected.pages.keys()
        figures.indexed_in_scope = len(covered)
        figures.coverage = len(covered) / max(1, len(expected.pages))
        not_indexed = sorted(expected.pages.keys() - covered)
        why = {page_key(urlsplit(u).path): d for u, d in {**skipped, **failed}.items()}
        figures.not_indexed_examples = [f"{p}: {why.get(p, 'never fetched')}" for p in not_indexed[:8]]
        if figures.coverage < COVERAGE:
            figures.failures.append(
                f"indexed {len(covered)} of {len(expected.pages)} in-scope pages ({figures.coverage:.1%} "
                f"< {COVERAGE:.0%}), e.g. {figures.not_indexed_examples[:3]}"
            )
        check_titles(figures, sources, root, expected)
        check_boilerplate(figures, site, sample_chunks(stub, kb, sources, site.name))
    finally:
        report.add(figures)
        print(
            f"\n{site.name}: {figures.state} in scope {figures.in_scope} / "
            f"indexed {figures.indexed_in_scope} "
            f"({figures.coverage:.1%}) / skipped {figures.skipped} / failed {figures.failed} / "
            f"{figures.chunks} chunks / {figures.seconds:.1f}s / bad titles {figures.title_mismatches} / "
            f"boilerplate {figures.boilerplate_hits} of {figures.chunks_sampled} sampled"
        )
    if figures.failures:
        pytest.fail(f"{site.name}:\n" + "\n".join(figures.failures), pytrace=False)
