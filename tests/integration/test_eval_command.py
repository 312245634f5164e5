"""`ragcord eval` and other CLI commands against a running admin API (the fixture site, --export-feedback)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from cli.main import main
from ragcord.feedback import FeedbackStore
from tests.harness import admin_api, crawl
from tests.sitekit import FixtureSite

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "site"

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
        out = capsys.readouterr().out
        strict = await asyncio.to_thread(
            main, ["eval", "--address", address, "--kb", "docs", "--min-hit-at-5", "0.9", str(golden)]
        )

    assert status == 0 and strict == 1  # 3 of 4 turns hit: below a 0.9 floor
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


async def test_answers_voted_up_export_as_a_golden_set(make_settings, tmp_path, monkeypatch, redis_client):
    settings = make_settings()
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
    monkeypatch.setenv("RAGCORD_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("RAGCORD_KEY_PREFIX", settings.key_prefix)
    out = tmp_path / "from-feedback.yaml"

    async with admin_api(settings) as (_, address):
        status = await asyncio.to_thread(
            main, ["eval", "--address", address, "--kb", "docs", "--export-feedback", str(out)]
        )

    assert status == 0
    assert yaml.safe_load(out.read_text()) == {
        "questions": [{"question": "How do I install it?", "expected": ["http://d/docs/installation.html"]}]
    }


async def test_the_cli_without_the_token_says_which_setting_to_set(make_settings, monkeypatch, capsys):
    settings = make_settings(admin_token="s3cret")
    monkeypatch.setenv("RAGCORD_REDIS_URL", settings.redis_url)
    monkeypatch.delenv("RAGCORD_ADMIN_TOKEN", raising=False)
    async with admin_api(settings) as (_, address):
        status = await asyncio.to_thread(main, ["jobs", "--address", address])
    assert status == 1
    err = capsys.readouterr().err
    assert "UNAUTHENTICATED" in err and "RAGCORD_ADMIN_TOKEN" in err
