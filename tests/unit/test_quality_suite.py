"""The answer-quality suite's data is sound, and its scoring says what a reader of the answer would say."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from bench.quality import (
    BM25,
    CrawlResult,
    ItemResult,
    Results,
    answer_parts,
    count_fragments,
    first_hit_rank,
    is_fragment,
    is_usable,
    score,
)
from ragcord.evaluation import Golden, Reply, evaluate
from tests.quality.suite import OUTSIDE, check_counts, load_suite, validate

CI = bool(os.environ.get("CI"))


@pytest.fixture(scope="module")
def suite():
    suite = load_suite()
    absent = [s.package for s in suite.sites.values() if not s.root.is_dir()]
    if absent and not CI:
        pytest.skip(f"Debian doc packages not installed: {' '.join(absent)}")
    return suite


def test_every_expected_page_exists_is_in_scope_and_holds_a_key_term(suite):
    assert validate(suite) == []


def test_the_held_out_set_is_sound_and_shares_no_question_with_the_suite(suite):
    held_out = load_suite(questions="heldout.yaml")
    assert validate(held_out) == []
    assert not {i.id for i in held_out.items()} & {i.id for i in suite.items()}
    assert not {i.question.lower() for i in held_out.items()} & {i.question.lower() for i in suite.items()}
    assert len(held_out.questions) >= 50 and len(held_out.conversations) >= 12
    assert {q.site for q in held_out.questions} == set(suite.sites)


def test_the_outside_check_is_sound_and_apart_from_the_suite(suite):
    outside = load_suite(OUTSIDE)
    absent = [s.package for s in outside.sites.values() if not s.root.is_dir()]
    if absent:
        pytest.skip(f"Debian doc packages not installed: {' '.join(absent)}")
    assert validate(outside) == []
    assert not set(outside.sites) & set(suite.sites)
    assert all(not site.tuned_on for site in outside.sites.values())
    assert len(outside.questions) >= 20 and outside.conversations and outside.missing


def test_the_suite_meets_its_minimums(suite):
    assert check_counts(suite) == []


def test_missing_pages_are_left_out_of_the_crawl(suite):
    for item in suite.missing:
        site = suite.sites[item.site]
        assert not site.in_scope(item.page), item.id
        assert site.file(item.page).is_file(), item.id


def test_a_quick_run_keeps_only_the_chosen_sites_and_a_few_items_each(suite):
    small = suite.only(sites={"flask", "glib"}).only(limit=2)
    assert set(small.sites) == {"flask", "glib"}
    assert {q.site for q in small.questions} == {"flask", "glib"}
    assert len(small.questions) == 4


def _write_suite(tmp_path: Path, question_yaml: str) -> Path:
    site = tmp_path / "site"
    (site / "guide").mkdir(parents=True)
    (site / "index.html").write_text('<html><body><a href="guide/a.html">A</a></body></html>')
    (site / "guide" / "a.html").write_text(
        '<?xml version="1.0" encoding="UTF-8"?><html><body><h2 id="install">Install</h2>'
        "<p>Run <code>pip install widget</code>.</p></body></html>"
    )
    (site / "secret.html").write_text("<html><body><p>Use widget --purge.</p></body></html>")
    (tmp_path / "sites.yaml").write_text(
        textwrap.dedent(
            f"""
            sites:
              - {{name: demo, generator: sphinx, package: demo-doc, root: {site}, seed: index.html,
                 max_pages: 10,
                 include: ['^/(index\\.html)?$', '^/guide/'], exclude: [], missing: [secret.html]}}
            """
        )
    )
    (tmp_path / "questions.yaml").write_text(textwrap.dedent(question_yaml))
    return tmp_path


def test_validation_names_each_broken_question(tmp_path):
    directory = _write_suite(
        tmp_path,
        """
        questions:
          - {id: ok, site: demo, question: how do i install it, expected: [guide/a.html#install],
             key_terms: [pip install]}
          - {id: no-term, site: demo, question: how do i remove it, expected: [guide/a.html],
             key_terms: [--purge]}
          - {id: outside, site: demo, question: remove it, expected: [secret.html], key_terms: [--purge]}
          - {id: bad-anchor, site: demo, question: install, expected: [guide/a.html#nope], key_terms: [pip]}
          - {id: ok, site: demo, question: again, expected: [guide/a.html], key_terms: [pip]}
        conversations: []
        off_topic: []
        missing:
          - {id: miss, site: demo, question: purge it, page: secret.html, key_terms: [--purge]}
        """,
    )
    problems = validate(load_suite(directory))
    assert problems == ["id ok is used 2 times"]  # ids first: nothing else is checked until they are unique

    text = (
        (directory / "questions.yaml")
        .read_text()
        .replace("id: ok, site: demo, question: again", "id: ok2, site: demo, question: again")
    )
    (directory / "questions.yaml").write_text(text)
    problems = validate(load_suite(directory))
    assert problems == [
        "question no-term: none of the key terms ['--purge'] occurs in guide/a.html",
        "question outside: expected page secret.html is outside the crawl scope of demo",
        "question bad-anchor: guide/a.html has no element with id 'nope'",
    ]


def test_a_missing_question_whose_answer_is_in_scope_is_reported(tmp_path):
    directory = _write_suite(
        tmp_path,
        """
        questions: []
        conversations: []
        off_topic: []
        missing:
          - {id: miss, site: demo, question: install it, page: secret.html, key_terms: [widget]}
        """,
    )
    assert validate(load_suite(directory)) == [
        "missing miss: in-scope page guide/a.html contains ['widget'], so the answer is not missing"
    ]


BASE = "http://127.0.0.1:8000"


def test_a_citation_hits_its_page_and_a_named_section_only_with_that_fragment():
    def hits(url: str, expected: str) -> bool:
        return first_hit_rank([url], BASE, [expected]) == 1

    assert hits(f"{BASE}/tutorial/venv.html", "tutorial/venv.html")
    assert hits(f"{BASE}/tutorial/venv.html#creating", "tutorial/venv.html")
    assert not hits(f"{BASE}/tutorial/venv.html", "tutorial/venv.html#creating")
    assert hits(f"{BASE}/guide/A%20Basic%20Step.html", "guide/A Basic Step.html")
    assert hits(f"{BASE}/", "index.html")
    assert not hits(f"{BASE}/x/tutorial/venv.html", "tutorial/venv.html")  # a path under the site's root
    assert not hits("http://127.0.0.1:9999/tutorial/venv.html", "tutorial/venv.html")


def test_the_rank_is_the_first_matching_citation():
    urls = [f"{BASE}/a.html", f"{BASE}/b.html", f"{BASE}/c.html"]
    assert first_hit_rank(urls, BASE, ["c.html", "b.html"]) == 2
    assert first_hit_rank(urls, BASE, ["d.html"]) is None


def test_the_suite_and_ragcord_eval_give_the_same_answers_the_same_figures(tmp_path):
    # Given three answers (an escaped key term, a quoted path, a section that is not the one expected)
    directory = _write_suite(
        tmp_path,
        """
        questions:
          - {id: cache, site: demo, question: how do i cache a function, expected: [lib/functools.html],
             key_terms: [lru_cache]}
          - {id: step, site: demo, question: what is the first step, expected: [guide/A Basic Step.html],
             key_terms: [the first step]}
          - {id: install, site: demo, question: how do i install it, expected: [guide/a.html#install],
             key_terms: [pip install]}
        conversations: []
        off_topic: []
        missing: []
        """,
    )
    suite = load_suite(directory)
    answers = {
        "cache": ([f"{BASE}/", f"{BASE}/lib/functools.html#x"], r"Use `@functools.lru\_cache`. [2]"),
        "step": ([f"{BASE}/guide/A%20Basic%20Step.html"], "**The first  step** is this. [1]"),
        "install": ([f"{BASE}/guide/a.html#remove", f"{BASE}/guide/a.html#install"], "Run it. [1]"),
    }
    results = Results(
        settings={},
        crawls=[CrawlResult("demo", "SUCCEEDED", 3, 0, 0, 3, 1.0, base_url=BASE, pages_indexed=[])],
        items=[
            ItemResult(q.id, "question", "demo", q.question, found=True, citations=cited, text=text)
            for q in suite.questions
            for cited, text in [answers[q.id]]
        ],
    )
    replies = {q.question: Reply(answers[q.id][1], tuple(answers[q.id][0]), True) for q in suite.questions}
    golden = [
        Golden(q.question, tuple(f"{BASE}/{e}" for e in q.expected), q.key_terms) for q in suite.questions
    ]

    # When the suite scores them, and ragcord eval scores them against the same pages
    score(results, suite)
    suite_figures = Results.from_json(results.to_json()).figures()
    report = evaluate(golden, lambda question, _: replies[question], new_conversation=lambda: "c")

    # Then the figures are the same (the suite keeps three decimals)
    eval_figures = (report.hit_at(1), report.hit_at(5), report.mrr(), report.key_terms() or 0.0)
    names = ("hit1", "hit5", "mrr", "key_term")
    assert tuple(suite_figures[n] for n in names) == tuple(round(f, 3) for f in eval_figures)
    assert eval_figures == (1 / 3, 1.0, 2 / 3, 2 / 3)


@pytest.mark.parametrize(
    ("part", "fragment"),
    [
        ("The cache is cleared with cache_clear(). [1]", False),
        ("of the string, while search() looks anywhere. [2]", True),
        ("The function returns a list of", True),
        ("- `lru_cache` for memoising\n- `cache` without a limit", False),
        ("```python\nimport json\njson.dumps(x)\n```", False),
        ("```python\nimport json\njson.dumps(x)", True),
        ("os.path.join() joins one or more path segments.", False),
        ("It says “done.” [3]", False),
        ("This goes on and on…", True),
        ("The key parameter is called on each element:", True),
        ("Whether the path exists: ```python\n>>> Path('.').exists()\nTrue\n``` [1]", False),
        ("object | dict string | str parse_float is called on every float. [1]", True),
        # A quote introduced by its page and section: the intro line is a label, the quote is judged.
        ("**functools › lru_cache**\n`@functools.lru_cache(user_function)`\nIt saves time. [1]", False),
        ("**functools › lru_cache**\nthe wrapped function can be used [1]", True),
        ("**json › Usage**\nSerialize obj to a JSON str:\n```python\njson.dumps(x)\n```\n[2]", False),
        ("**Sorting HOW TO › Key Functions**\nIts three steps:\n- decorate\n- sort [1]", False),
        ("functools › lru_cache\nIt saves time. [1]", True),  # an intro must look like one
        # Tables the extractor writes as `cell | cell` rows, whatever case their cells start with.
        ("**Strings › Parameters**\nstring | a GString\nc | the byte to append\n[1]", False),
        ("JSON | Python\nobject | dict\nnull | None", False),
    ],
)
def test_a_fragment_starts_mid_sentence_or_is_cut_off(part, fragment):
    assert is_fragment(part) is fragment


def test_fragments_are_counted_per_part_and_code_blocks_stay_whole():
    text = "Use json.dumps(). [1]\n\n```\na = 1\n\nb = 2\n```\n\nand then it writes [2]"
    assert count_fragments(text) == 1
    glued = "Sort by key: ```python\n>>> sorted(d)\n\n>>> sorted(d, key=len)\n``` [1]\n\nDone. [2]"
    assert answer_parts(glued)[1] == "Done. [2]"
    assert count_fragments(glued) == 0


def test_bm25_ranks_the_page_with_the_rare_question_words_first():
    bm25 = BM25(
        {
            "venv.html": "create a virtual environment with python -m venv and activate it",
            "json.html": "encode and decode json documents with json dumps and loads",
            "index.html": "python documentation index python python",
        }
    )
    assert bm25.rank("how do i make a virtual environment")[0] == "venv.html"
    assert bm25.rank("serialize to json")[0] == "json.html"
    assert bm25.rank("pizza in rome") == []


def test_stored_answers_are_scored_against_the_current_questions(tmp_path):
    directory = _write_suite(
        tmp_path,
        """
        questions:
          - {id: install, site: demo, question: how do i install widget, expected: [guide/a.html],
             key_terms: [pip install]}
        conversations: []
        off_topic: []
        missing: []
        """,
    )
    suite = load_suite(directory)
    results = Results(
        settings={},
        crawls=[
            CrawlResult("demo", "SUCCEEDED", 2, 0, 0, 3, 1.0, base_url=BASE, pages_indexed=["guide/a.html"])
        ],
        items=[
            ItemResult(
                "install",
                "question",
                "demo",
                "how do i install widget",
                found=True,
                citations=[f"{BASE}/index.html", f"{BASE}/guide/a.html"],
                text=r"Run `pip install widget`. [2]",
            )
        ],
    )

    score(results, suite)

    figures = Results.from_json(results.to_json()).figures()
    assert (figures["hit1"], figures["hit5"], figures["mrr"], figures["key_term"]) == (0.0, 1.0, 0.5, 1.0)
    assert figures["bm25_hit1"] == 1.0


def test_a_page_reached_only_through_an_out_of_scope_index_is_reported(tmp_path):
    site = tmp_path / "site"
    (site / "library").mkdir(parents=True)
    (site / "index.html").write_text('<html><body><a href="library/index.html">Library</a></body></html>')
    (site / "library" / "index.html").write_text('<html><body><a href="json.html">json</a></body></html>')
    (site / "library" / "json.html").write_text("<html><body><p>Use json.dumps().</p></body></html>")
    # The crawler writes library/index.html as library/, which this include pattern does not admit.
    (tmp_path / "sites.yaml").write_text(
        f"sites:\n  - {{name: demo, generator: sphinx, package: demo-doc, root: {site}, seed: index.html,\n"
        "     max_pages: 10, include: ['^/(index\\.html)?$', '^/library/(index|json)\\.html$']}\n"
    )
    (tmp_path / "questions.yaml").write_text(
        "questions:\n  - {id: json, site: demo, question: dict to json, expected: [library/json.html],\n"
        "     key_terms: [json.dumps]}\nconversations: []\noff_topic: []\nmissing: []\n"
    )
    assert validate(load_suite(tmp_path)) == [
        "question json: no in-scope link leads from index.html to library/json.html"
    ]


def test_asking_in_process_needs_a_kept_crawl(tmp_path):
    from bench.quality import main, run_suite

    with pytest.raises(SystemExit, match="give --keep DIR"):
        main(["--in-process"])
    with pytest.raises(ValueError, match="needs a kept crawl"):
        run_suite(load_suite(), keep=tmp_path / "nothing-kept-here", in_process=True)


def test_an_answer_is_usable_when_its_first_passage_names_what_answers():
    answer = (
        "**functools › lru_cache**\nUse `@lru_cache` to memoise. [1]\n\n**functools › cache**\nUse cache. [1]"
    )
    assert is_usable(answer, True, ["lru_cache"])
    assert not is_usable(answer, True, ["cache("])  # only in no passage
    late = "**functools › partial**\nPartial objects. [1]\n\n**functools › lru_cache**\n`lru_cache` [1]"
    assert not is_usable(late, True, ["lru_cache"])  # the reader has to get past the first quote
    assert not is_usable(answer, False, ["lru_cache"])
