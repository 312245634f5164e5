"""`ragcord eval` and other CLI commands against a running admin API (the fixture site, --export-feedback)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from cli.evaluate import _check_floor
from cli.main import main
from ragcord.bootstrap import bootstrap
from ragcord.feedback import FeedbackStore
from tests.harness import admin_api, crawl
from tests.integration.test_admin_api import chunk
from tests.sitekit import FixtureSite

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "site"
PAGE = "http://d/docs/installation.html"
NOT_FOUND = "error: NOT_FOUND: knowledge base 'nokb' does not exist; existing: docs"

GOLDEN = """\
questions:
  - question: Which Python versions can I run Quillstack on?
    expected: docs/installation.html
    key_terms: ["python"]
  - question: How do I make a separate Python environment for my Quillstack project?
    expected: [docs/virtualenv.html]
    follow_up:
      question: and how do I activate it?
      expected: docs/virtualenv.html
  - question: How do I rotate the signing key of the webhooks?
    expected: docs/no-such-page.html
"""


async def test_eval_scores_a_golden_set_and_lists_the_misses(make_settings, tmp_path, monkeypatch, capsys):
    settings = make_settings()
    from ragcord.bootstrap import bootstrap

    services = bootstrap(settings)
    with FixtureSite(root=SITE) as site:
        await asyncio.to_thread(crawl, settings, services, site.url("/docs/"), "docs", max_pages=100)
    golden = tmp_path / "golden.yaml"
    golden.write_text(GOLDEN)
    for name, value in {
        "RAGCORD_REDIS_URL": settings.redis_url,
        "RAGCORD_KEY_PREFIX": settings.key_prefix,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RAGCORD_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RAGCORD_EMBEDDER", "none")
    monkeypatch.setenv("COLUMNS", "160")

    async with admin_api(settings, services) as (_, address):
        status = await asyncio.to_thread(main, ["eval", "--address", address, "--kb", "docs", str(golden)])
        out, err = capsys.readouterr()
        strict = await asyncio.to_thread(
            main, ["eval", "--address", address, "--kb", "docs", "--min-hit-at-5", "0.9", str(golden)]
        )
        strict_out, strict_err = capsys.readouterr()

    assert status == 0 and strict == 1  # 3 of 4 turns hit: below a 0.9 floor
    assert "below" not in err
    assert "docs: 4 questions" in strict_out  # the report, then why the exit code is 1
    assert strict_err.splitlines()[-1] == "hit@5 0.75 is below --min-hit-at-5 0.90"
    assert "docs: 4 questions" in out
    cells = {
        line.strip("│ ").split("│")[0].strip(): [c.strip() for c in line.strip("│ ").split("│")[1:]]
        for line in out.splitlines()
        if line.startswith("│")
    }
    assert cells["all"] == ["4", "0.75", "0.75", "0.750", "1.00"]  # questions, hit@1, hit@5, MRR, key term
    assert cells["follow-ups"][:3] == ["1", "1.00", "1.00"]
    assert "1 misses" in out
    assert "How do I rotate the signing key of the webhooks?" in out
    assert "expected docs/no-such-page.html" in out
    services.close()


@pytest.fixture
async def api(make_settings, monkeypatch):
    """A running admin API whose one knowledge base, `docs`, holds one page; yields (settings, address)."""
    settings = make_settings()
    services = bootstrap(settings)
    services.store.replace_page("docs", PAGE, [chunk(PAGE)])
    monkeypatch.setenv("RAGCORD_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("RAGCORD_KEY_PREFIX", settings.key_prefix)
    async with admin_api(settings, services) as (_, address):
        yield settings, address
    services.close()


async def test_answers_voted_up_export_as_a_golden_set(api, tmp_path, redis_client):
    settings, address = api
    feedback = FeedbackStore(redis_client, prefix=settings.key_prefix)
    feedback.record_answer(
        "a1",
        question="How do I install it?",
        answer="Run pip install quillstack [1]",
        cited_urls=["http://d/docs/installation.html"],
        knowledge_base="docs",
    )
    feedback.vote("a1", "user1", "up")
    feedback.record_answer(
        "a2",
        question="Is it slow?",
        answer="…",
        cited_urls=["http://d/docs/perf.html"],
        knowledge_base="docs",
    )
    feedback.vote("a2", "user1", "down")
    out = tmp_path / "from-feedback.yaml"

    status = await asyncio.to_thread(
        main, ["eval", "--address", address, "--kb", "docs", "--export-feedback", str(out)]
    )

    assert status == 0
    assert yaml.safe_load(out.read_text()) == {
        "questions": [{"question": "How do I install it?", "expected": ["http://d/docs/installation.html"]}]
    }


@pytest.mark.parametrize(
    ("votes", "message"),
    [
        ([], "no answers in 'docs' have been voted 👍 yet: nothing to export"),
        (["down"], "no answers in 'docs' have been voted 👍 yet: nothing to export"),
        (["up", "down"], "no answer in 'docs' has more 👍 than 👎 votes and a citation: nothing to export"),
    ],
    ids=["no votes", "voted down", "as many down as up"],
)
@pytest.mark.parametrize("to", ["file", "stdout"])
async def test_with_nothing_voted_up_export_writes_nothing_and_exits_1(
    api, tmp_path, redis_client, capsys, votes, message, to
):
    settings, address = api
    feedback = FeedbackStore(redis_client, prefix=settings.key_prefix)
    feedback.record_answer("a1", question="Is it slow?", answer="…", cited_urls=[PAGE], knowledge_base="docs")
    for n, vote in enumerate(votes):
        feedback.vote("a1", f"user{n}", vote)
    out = tmp_path / "from-feedback.yaml"

    target = [str(out)] if to == "file" else []
    status = await asyncio.to_thread(
        main, ["eval", "--address", address, "--kb", "docs", "--export-feedback", *target]
    )

    assert status == 1
    assert not out.exists()  # not `questions: []`, a file eval would reject
    stdout, stderr = capsys.readouterr()
    assert stdout == ""
    assert stderr.splitlines() == [message]


async def test_an_unknown_knowledge_base_is_the_same_not_found_for_eval_and_export(api, tmp_path, capsys):
    _, address = api
    golden = tmp_path / "golden.yaml"
    golden.write_text(GOLDEN)
    out = tmp_path / "from-feedback.yaml"

    scored = await asyncio.to_thread(main, ["eval", "--address", address, "--kb", "nokb", str(golden)])
    scored_err = capsys.readouterr().err
    exported = await asyncio.to_thread(
        main, ["eval", "--address", address, "--kb", "nokb", "--export-feedback", str(out)]
    )
    exported_err = capsys.readouterr().err

    assert scored == exported == 1
    assert scored_err.splitlines() == exported_err.splitlines() == [NOT_FOUND]
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "questions:\n  - question: how do i install it\n    expected: docs/a.html: x\n",
            "{path} line 3, column 26: mapping values are not allowed here",
        ),
        ("questions: {question: q}\n", "{path} must be a non-empty list of questions"),
        (
            "- question: how do i install it\n  expectd: docs/installation.html\n",
            """{path}, question 1 ("how do i install it"): unknown key 'expectd' """
            "(allowed: question, expected, key_terms, follow_up)",
        ),
        (
            "- question: how do i install it\n  expected: 3\n",
            """{path}, question 1 ("how do i install it"): `expected` must be a string or a list""",
        ),
        (None, "cannot read {path}: No such file or directory"),
    ],
    ids=["not YAML", "wrong shape", "unknown key", "bad field", "unreadable"],
)
async def test_a_broken_golden_file_exits_2_in_one_line_apart_from_a_regression(
    api, tmp_path, capsys, content, message
):
    _, address = api
    golden = tmp_path / "golden.yaml"
    if content is not None:
        golden.write_text(content)

    status = await asyncio.to_thread(main, ["eval", "--address", address, "--kb", "docs", str(golden)])

    assert status == 2
    stdout, stderr = capsys.readouterr()
    assert stdout == ""  # nothing asked, no report
    assert len(stderr.splitlines()) == 1
    assert stderr.startswith("error: " + message.format(path=golden))


@pytest.mark.parametrize("floor", ["1.5", "-0.1", "nan", "most"])
def test_a_min_hit_at_5_outside_0_to_1_is_refused_before_anything_is_asked(capsys, floor):
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--min-hit-at-5", floor, "golden.yaml"])

    assert exited.value.code == 2
    assert f"argument --min-hit-at-5: '{floor}' is not a number from 0 to 1" in capsys.readouterr().err


def test_eval_help_lists_its_exit_codes(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--help"])

    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "exit codes:\n  0  scored" in shown
    assert "\n  1  hit@5 below --min-hit-at-5" in shown
    assert "\n  2  the golden file is unreadable, not YAML" in shown


async def test_the_cli_without_the_token_says_which_setting_to_set(make_settings, monkeypatch, capsys):
    settings = make_settings(admin_token="s3cret")
    monkeypatch.setenv("RAGCORD_REDIS_URL", settings.redis_url)
    monkeypatch.delenv("RAGCORD_ADMIN_TOKEN", raising=False)
    async with admin_api(settings) as (_, address):
        status = await asyncio.to_thread(main, ["jobs", "--address", address])
    assert status == 1
    err = capsys.readouterr().err
    assert "UNAUTHENTICATED" in err and "RAGCORD_ADMIN_TOKEN" in err


def test_the_floor_line_never_says_a_figure_is_below_itself(capsys):
    assert _check_floor(0.8999, 0.9) == 1
    assert capsys.readouterr().err == "hit@5 0.8999 is below --min-hit-at-5 0.9000\n"
    assert _check_floor(0.9, 0.9) == 0
    assert capsys.readouterr().err == ""
