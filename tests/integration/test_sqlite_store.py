"""SQLiteStore beyond the shared contract: several processes on one file, the query syntax a user cannot
reach, the vector cache catching up with other processes' writes, and ragcord running with neither lancedb
nor pyarrow importable."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ragcord.errors import StoreError
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.stores import StoredChunk
from ragcord.knowledge.stores.sqlite import SQLiteStore, fts_query

ROOT = Path(__file__).resolve().parents[2]
DIM = 8
CHUNKS = 12  # per page
PAGES = 4  # per writer


def unit(i: int) -> list[float]:
    return [1.0 if d == i % DIM else 0.0 for d in range(DIM)]


def page(url: str, version: int, n: int = CHUNKS) -> list[StoredChunk]:
    return [
        StoredChunk(
            id=chunk_id(url, i),
            url=url,
            title=url,
            heading="",
            chunk_index=i,
            text=f"shared words version{version} chunk{i}",
            content_hash=f"v{version}",
            indexed_at=float(version),
            vector=unit(i + version),
        )
        for i in range(n)
    ]


def write_pages(path: str, writer: int, rounds: int) -> None:
    store = SQLiteStore(Path(path), dim=DIM)
    for version in range(rounds):
        for p in range(PAGES):
            url = f"http://w{writer}/page-{p}"
            # Pages grow and shrink, so a half-written page would show as a wrong count.
            store.replace_page("kb", url, page(url, version, CHUNKS - (version % 3)))
    store.close()


def read_while_written(path: str, done, errors) -> None:  # (multiprocessing's Event and Queue)
    store = SQLiteStore(Path(path), dim=DIM)
    checks = 0
    try:
        while True:
            finished = done.is_set()
            for source in store.list_sources("kb"):
                detail = store.get_source("kb", source.url)
                versions = {c.content_hash for c in detail.chunks}
                expected = CHUNKS - (int(detail.chunks[0].indexed_at) % 3)
                if len(versions) != 1 or len(detail.chunks) != expected:
                    errors.put(f"half page {source.url}: {len(detail.chunks)} chunks of versions {versions}")
                checks += 1
            for hit in store.keyword_search("kb", "shared version1", 20):
                assert hit.chunk.text.startswith("shared words")
            nearest = store.vector_search("kb", unit(3), 20)
            assert not nearest or nearest[0].score == pytest.approx(1.0, abs=1e-5)
            if finished:
                break
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails with it
        errors.put(repr(exc))
    errors.put(("checks", checks))
    store.close()


def test_two_writing_processes_and_a_reading_one_never_see_half_a_page(tmp_path):
    path = str(tmp_path / "shared.sqlite3")
    SQLiteStore(Path(path), dim=DIM).close()
    spawn = multiprocessing.get_context("spawn")
    done, errors = spawn.Event(), spawn.Queue()
    reader = spawn.Process(target=read_while_written, args=(path, done, errors))
    writers = [spawn.Process(target=write_pages, args=(path, w, 15)) for w in range(2)]
    reader.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
        assert writer.exitcode == 0
    done.set()
    reader.join(timeout=300)
    assert reader.exitcode == 0

    reported = []
    while not errors.empty():
        reported.append(errors.get())
    problems = [r for r in reported if not isinstance(r, tuple)]
    assert problems == []
    assert [r for r in reported if isinstance(r, tuple)][0][1] >= 2 * PAGES  # at least the last full pass
    store = SQLiteStore(Path(path), dim=DIM)
    assert store.count_chunks("kb") == 2 * PAGES * (CHUNKS - 14 % 3)


def test_a_readers_vector_cache_follows_other_processes_writes(tmp_path):
    reader = SQLiteStore(tmp_path / "s.sqlite3", dim=DIM)
    writer = SQLiteStore(tmp_path / "s.sqlite3", dim=DIM)
    writer.replace_page("kb", "http://x/a", page("http://x/a", 0, 4))
    assert [r.chunk.chunk_index for r in reader.vector_search("kb", unit(2), 1)] == [2]

    writer.replace_page("kb", "http://x/a", page("http://x/a", 1, 4))  # vectors move one axis along
    writer.replace_page("kb", "http://x/b", page("http://x/b", 5, 2))
    hits = reader.vector_search("kb", unit(2), 3)
    assert [(r.chunk.url, r.chunk.chunk_index) for r in hits][:1] == [("http://x/a", 1)]
    assert {r.chunk.content_hash for r in hits if r.chunk.url == "http://x/a"} == {"v1"}

    for _ in range(5):  # enough rewrites that the dead rows are compacted away
        writer.replace_page("kb", "http://x/a", page("http://x/a", 1, 4))
    assert [r.chunk.chunk_index for r in reader.vector_search("kb", unit(2), 1, source="http://x/a")] == [1]
    assert reader.vector_search("kb", unit(2), 10, source="http://x/none") == []

    writer.drop_knowledge_base("kb")
    writer.replace_page("kb", "http://x/c", page("http://x/c", 0, 3))  # made again: seqs start over
    assert [r.chunk.url for r in reader.vector_search("kb", unit(0), 5)] == ["http://x/c"] * 3


@pytest.mark.parametrize(
    "query",
    [
        '"unbalanced',
        "NEAR(a b)",
        "text:secret",
        "a* OR NOT b",
        "col:^x",
        "AND",
        "'); DROP TABLE x; --",
        "+-()",
    ],
)
def test_user_text_never_reaches_the_fts_query_syntax(tmp_path, query):
    store = SQLiteStore(tmp_path / "s.sqlite3", dim=DIM)
    store.replace_page("kb", "http://x/a", page("http://x/a", 0, 2))

    store.keyword_search("kb", query, 5)  # no error, whatever it finds

    assert fts_query(query).count('"') % 2 == 0
    assert store.count_chunks("kb") == 2


def test_keyword_terms_follow_lancedbs_tokenizing():
    assert (
        fts_query("How do I use lru_cache with THE Décorateur?")
        == '"use" OR "lru" OR "cache" OR "décorateur"'
    )
    assert fts_query("the and of") == ""
    assert fts_query("x" * 41) == ""


def test_a_knowledge_base_keeps_the_dimension_it_was_made_with(tmp_path):
    SQLiteStore(tmp_path / "s.sqlite3", dim=DIM).replace_page("kb", "http://x/a", page("http://x/a", 0, 1))

    with pytest.raises(StoreError, match="holds 8-dimension vectors"):
        SQLiteStore(tmp_path / "s.sqlite3", dim=4).replace_page("kb", "http://x/b", [])
    with pytest.raises(StoreError, match="indexed with vectors"):
        SQLiteStore(tmp_path / "s.sqlite3", dim=None).replace_page("kb", "http://x/b", [])
    with pytest.raises(StoreError, match="3-dimension vector"):
        short = [StoredChunk(**{**page("http://x/c", 0, 1)[0].__dict__, "vector": [1.0, 0.0, 0.0]})]
        SQLiteStore(tmp_path / "s.sqlite3", dim=DIM).replace_page("kb", "http://x/c", short)
    assert [s.url for s in SQLiteStore(tmp_path / "s.sqlite3", dim=DIM).list_sources("kb")] == ["http://x/a"]


HIDDEN = """
import sys
sys.modules["lancedb"] = None  # (an import of either now raises ImportError, as in a venv without them)
sys.modules["pyarrow"] = None
"""

CRAWL_AND_ASK = """
import json, sys
from pathlib import Path
import bot.app, cli.main, rpc.server, workers.entry  # every entry point imports without them
from ragcord.answering.service import build_ask_service
from ragcord.bootstrap import bootstrap
from ragcord.settings import Settings
from tests.harness import crawl, delete_prefixed_keys
from tests.sitekit import FixtureSite

redis_url, prefix, data_dir = sys.argv[1:4]
settings = Settings(_env_file=None, redis_url=redis_url, key_prefix=prefix, allow_private_networks=True,
                    data_dir=Path(data_dir), embedder="local", store="sqlite")
services = bootstrap(settings)
try:
    with FixtureSite(root=Path("tests/fixtures/site")) as site:
        job = crawl(settings, services, site.url("/docs/"), "docs", exclude_patterns=["/special/"])
    question = "Which Python versions can I run Quillstack on?"
    answer = build_ask_service(services).ask(question, knowledge_base="docs")
    print(json.dumps({"state": job.state.value, "chunks": services.store.count_chunks("docs"),
                      "found": answer.found, "citations": [c.url for c in answer.citations],
                      "loaded": [m for m in ("lancedb", "pyarrow") if sys.modules.get(m) is not None]}))
finally:
    services.close()
    delete_prefixed_keys(redis_url, prefix)
"""


def test_a_crawl_and_an_answer_need_neither_lancedb_nor_pyarrow(redis_url, tmp_path):
    script = HIDDEN + textwrap.dedent(CRAWL_AND_ASK)
    prefix = f"nolance{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script, redis_url, prefix, str(tmp_path / "data")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["state"] == "SUCCEEDED" and outcome["chunks"] > 0
    assert outcome["found"] and any("/docs/installation.html" in url for url in outcome["citations"][:3])
    assert outcome["loaded"] == []
    assert (tmp_path / "data" / "ragcord.sqlite3").exists()


def test_store_copy_moves_knowledge_bases_from_lancedb_to_sqlite_and_back(tmp_path, monkeypatch, capsys):
    from cli.main import main
    from ragcord.knowledge.stores.lancedb import LanceDBStore

    rng = np.random.default_rng(3)
    lance = LanceDBStore(tmp_path / "lancedb", dim=384)
    for p in range(6):
        url = f"http://docs.example/{p}"
        chunks = page(url, 0, 1 + p % 3)
        lance.replace_page("guides", url, [replace(c, vector=rng.random(384).tolist()) for c in chunks])
    before = {c.id: c.vector for batch in lance.export("guides") for c in batch}
    monkeypatch.setenv("RAGCORD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RAGCORD_EMBEDDER", "local")

    assert main(["store", "copy", "--from", "lancedb", "--to", "sqlite"]) == 0
    assert "guides: 6 pages, 12 chunks copied to sqlite" in capsys.readouterr().out
    lance.drop_knowledge_base("guides")
    assert main(["store", "copy", "--from", "sqlite", "--to", "lancedb", "--kb", "guides"]) == 0

    sqlite = SQLiteStore(tmp_path / "ragcord.sqlite3", dim=384)
    for copied in (sqlite, LanceDBStore(tmp_path / "lancedb", dim=384)):
        assert {c.id: c.vector for batch in copied.export("guides") for c in batch} == before
    assert sqlite.knowledge_bases() == ["guides"]


def test_every_thread_searches_on_a_connection_of_its_own(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    store = SQLiteStore(tmp_path / "s.sqlite3", dim=DIM)
    store.replace_page("kb", "http://x/a", page("http://x/a", 0, 4))

    def search(i: int) -> int:  # a thread's first call may be a vector search (it opens the connection)
        return store.vector_search("kb", unit(i), 1)[0].chunk.chunk_index

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(search, range(4))) == [0, 1, 2, 3]
    assert len(store._connections) >= 2
    store.close()


def test_the_fixture_sites_questions_find_their_pages_as_well_as_on_lancedb(indexed, tmp_path):
    from ragcord.knowledge.embedders import NoEmbedder
    from ragcord.knowledge.migrate import copy_knowledge_base
    from ragcord.knowledge.search import Retriever
    from tests.integration.conftest import QUESTIONS
    from tests.integration.test_retrieval import evaluate, report

    sqlite = SQLiteStore(tmp_path / "s.sqlite3", dim=indexed.embedder.dim)
    copy_knowledge_base(indexed.store, sqlite, "docs")

    for name, embedder in (("hybrid", indexed.embedder), ("keyword only", NoEmbedder())):
        on_sqlite = evaluate(Retriever(sqlite, embedder), QUESTIONS)
        on_lancedb = evaluate(Retriever(indexed.store, embedder), QUESTIONS)
        report(f"{name} on sqlite", on_sqlite)
        report(f"{name} on lancedb", on_lancedb)
        assert on_sqlite["hit@5"] >= on_lancedb["hit@5"] - 0.05
        assert on_sqlite["mrr"] >= on_lancedb["mrr"] - 0.05


def test_a_word_in_most_chunks_is_left_out_of_the_ranking_as_bm25_gives_it_no_weight(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite3", dim=DIM)
    for p in range(6):
        url = f"http://x/{p}"
        store.replace_page("kb", url, page(url, p, 3))  # "shared words versionP chunkI" everywhere
    rare = [r.chunk.id for r in store.keyword_search("kb", "version2 chunk1", 10)]
    assert len(rare) == 8  # version2: 3 chunks, chunk1: 6, one in both

    assert [r.chunk.id for r in store.keyword_search("kb", "shared version2 chunk1", 10)] == rare
    assert len(store.keyword_search("kb", "shared words", 30)) == 18  # only common words: all kept
    assert store.count_chunks("kb") == 18
    store.remove_chunks("kb", "http://x/0", [0, 2])
    assert store.count_chunks("kb") == 16


def test_choosing_lancedb_without_it_installed_says_what_to_do(monkeypatch, tmp_path):
    from ragcord.knowledge.stores import build_store
    from ragcord.settings import Settings

    monkeypatch.delitem(sys.modules, "ragcord.knowledge.stores.lancedb", raising=False)
    monkeypatch.setitem(sys.modules, "lancedb", None)  # as in a venv without the extra
    settings = Settings(_env_file=None, data_dir=tmp_path, store="lancedb")

    with pytest.raises(StoreError, match=r"pip install 'ragcord\[lancedb\]', or set RAGCORD_STORE=sqlite"):
        build_store(settings, dim=DIM)
    assert isinstance(build_store(settings.model_copy(update={"store": "sqlite"}), dim=DIM), SQLiteStore)


def test_a_page_of_more_rows_than_one_statement_takes_is_written_and_replaced_whole(tmp_path):
    store = SQLiteStore(tmp_path / "kb.sqlite", dim=DIM)
    url = "http://docs.example.test/big.html"
    store.replace_page("kb", url, page(url, 0, n=250))  # three INSERTs of up to 90 rows
    store.replace_page(
        "kb", "http://docs.example.test/other.html", page("http://docs.example.test/other.html", 0)
    )
    assert store.count_chunks("kb") == 250 + CHUNKS
    store.replace_page("kb", url, page(url, 1, n=181))  # shrinks, still three statements
    assert store.count_chunks("kb") == 181 + CHUNKS
    stored = store.chunks_of("kb", url, list(range(250)))
    assert [c.chunk_index for c in stored] == list(range(181))
    assert {c.content_hash for c in stored} == {"v1"}
    hits = store.keyword_search("kb", "version1 chunk180", 5)
    assert hits and hits[0].chunk.url == url and hits[0].chunk.chunk_index == 180
    assert not store.keyword_search("kb", "version0 chunk249", 5, source=url)  # the old rows left the index
    store.close()


class RankingEveryMatch(SQLiteStore):
    """The store before keyword search ranked only the chunks holding a rare term."""

    RARE_TERM_SHARE = 1.0


class RankingRareMatches(SQLiteStore):
    """The store as it searches a large knowledge base: only the chunks holding a rare term are ranked."""

    RANK_EVERY_MATCH_UP_TO = 0


def test_keyword_search_ranks_the_chunks_of_the_rare_terms_and_finds_what_ranking_every_match_finds(tmp_path):
    # 200 chunks: "quill" in 40% of them, "worker" in 20%, "sentry" in 3%, some of those beside the others.
    store = RankingRareMatches(tmp_path / "s.sqlite3", dim=DIM)
    for p in range(20):
        url = f"http://x/{p}"
        chunks = []
        for chunk in page(url, p, 10):
            n = p * 10 + chunk.chunk_index
            words = ["quill"] * (n % 5 < 2) + ["worker"] * (n % 10 in (2, 5)) + ["sentry"] * (n % 33 == 0)
            chunks.append(replace(chunk, text=" ".join([*words, f"filler{n % 7}", "text of the page"])))
        store.replace_page("kb", url, chunks)
    everything = RankingEveryMatch(store.path, dim=DIM)
    kept, rare = store._weighted_terms("kb", ['"sentry"', '"worker"', '"quill"'], 5)
    assert kept == ['"sentry"', '"worker"', '"quill"'] and rare == ['"sentry"']  # 7 chunks of 200: 3.5%

    found = store.keyword_search("kb", "sentry worker quill", 5)

    assert [(r.chunk.id, r.score) for r in found] == [
        (r.chunk.id, r.score) for r in everything.keyword_search("kb", "sentry worker quill", 5)
    ]
    assert all("sentry" in r.chunk.text for r in found)
    # Both parts of the ranking: chunks with the rare term beside common ones, and chunks with it alone.
    assert {"worker" in r.chunk.text or "quill" in r.chunk.text for r in found} == {True, False}
    # Fewer chunks hold the rare terms than asked for: every match is ranked, as before.
    assert [r.chunk.id for r in store.keyword_search("kb", "sentry worker quill", 30)] == [
        r.chunk.id for r in everything.keyword_search("kb", "sentry worker quill", 30)
    ]
    everything.close()
    # A knowledge base this small: every match is ranked (it costs next to nothing).
    assert SQLiteStore(store.path, dim=DIM)._weighted_terms("kb", ['"sentry"', '"quill"'], 5)[1] == [
        '"sentry"',
        '"quill"',
    ]


def test_term_counts_are_counted_again_after_a_write(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite3", dim=DIM)
    store.replace_page("kb", "http://x/0", page("http://x/0", 0, 4))
    assert store._term_counts("kb", ['"chunk1"', '"version1"']) == (4, {'"chunk1"': 1, '"version1"': 0})

    store.replace_page("kb", "http://x/1", page("http://x/1", 1, 4))

    assert store._term_counts("kb", ['"chunk1"', '"version1"']) == (8, {'"chunk1"': 2, '"version1"': 4})
    assert store._term_counts("gone", ['"chunk1"']) == (0, {'"chunk1"': 0})
