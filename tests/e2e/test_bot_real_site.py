"""The Discord bot on documentation none of us wrote: Python's tutorial (Debian's python3-doc) served on
loopback, crawled by a real worker into Redis and LanceDB, and asked through the real discord.py client on
the loopback Discord (tests/discord_fake.py). A follow-up in the answer's thread only makes sense with the
first question; the bot answers it from the thread's memory, and the same words in a new thread do not.
"""

from __future__ import annotations

import pytest

from tests.conftest import CI
from tests.harness import crawl, local_services
from tests.integration.test_bot import ask_command, bot_messages, running_bot, say_in
from tests.realsites.catalog import SITES
from tests.realsites.install import CannotInstall, install
from tests.realsites.server import DocSite

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PYTHON = SITES.by_name("sphinx-python")
# The tutorial and the two library pages its conversations end on: ~20 pages, under a minute to index.
SCOPE = [r"^/tutorial/", r"^/library/(venv|json)\.html$"]


@pytest.fixture(scope="module")
def python_docs(redis_url, tmp_path_factory):
    """Services over Python's tutorial crawled into knowledge base `docs`."""
    try:
        install([PYTHON])
    except CannotInstall as exc:
        if CI:
            raise
        pytest.skip(f"python3-doc is not installed: {exc}")
    root = PYTHON.root()
    assert root is not None
    with local_services(redis_url, tmp_path_factory.mktemp("python-docs"), name="botreal") as services:
        with DocSite(root) as site:
            job = crawl(
                services.settings,
                services,
                site.url("/tutorial/index.html"),
                "docs",
                include_patterns=SCOPE,
                max_pages=60,
            )
        assert job.state.value == "SUCCEEDED", job
        assert job.pages_done >= 15, job
        yield services


async def asked(fake, question: str) -> str:
    """/ask, then the id of its thread once the whole answer is there (a long one ends in the thread)."""
    answer = await ask_command(fake, fake.alice, question)
    thread_id = answer["id"]
    if "**Sources**" not in answer["content"]:
        await fake.wait_for(
            lambda: any("**Sources**" in m["content"] for m in bot_messages(fake, thread_id)), timeout=30
        )
    return thread_id


async def reply_in(fake, thread_id: str, text: str) -> str:
    """The bot's whole reply to `text` in the thread: every part of an answer split over messages."""
    before = len(bot_messages(fake, thread_id))
    await say_in(fake, fake.alice, thread_id, text)
    await fake.wait_for(lambda: "**Sources**" in bot_messages(fake, thread_id)[-1]["content"], timeout=30)
    return "\n".join(m["content"] for m in bot_messages(fake, thread_id)[before:])


@pytest.mark.parametrize(
    ("first", "follow_up", "page", "term"),
    [
        ("What is a virtual environment?", "how do I make one?", "venv.html", "-m venv"),
        (
            "how do i parse json in python",
            "ok and how do i write it back out to a file",
            "json",  # library/json.html or the tutorial's section on saving JSON
            "json.dump(",
        ),
    ],
    ids=["venv", "json"],
)
async def test_a_follow_up_in_the_thread_is_answered_from_the_threads_memory(
    python_docs, first, follow_up, page, term
):
    async with running_bot(python_docs) as world:
        fake = world.fake
        thread_id = await asked(fake, first)

        content = await reply_in(fake, thread_id, follow_up)
        assert term in content, content
        sources = content.split("**Sources**")[-1]
        assert page in sources, content
        turns = world.services.ask.memory.load(thread_id).turns
        assert [t.text for t in turns if t.role == "user"] == [first, follow_up]

        # The same words with no conversation behind them: nothing to go on, so not that answer.
        alone = await ask_command(fake, fake.alice, follow_up)
        assert term not in alone["content"], alone["content"]


async def test_a_new_topic_in_the_thread_is_answered_on_its_own(python_docs):
    async with running_bot(python_docs) as world:
        fake = world.fake
        thread_id = await asked(fake, "What is a virtual environment?")
        content = await reply_in(fake, thread_id, "write a class with a constructor")
        assert "__init__" in content, content
        assert "classes.html" in content.split("**Sources**")[-1], content
