"""A knowledge base's answer instructions reach the answerer (issue 22, part 3): the model's prompt carries
them after ragcord's own rules; the extractive answerer honours their `not found:` and `header:` lines."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from ragcord.answering.instructions import parse_instructions
from ragcord.answering.prompt import SYSTEM
from ragcord.answering.service import build_ask_service
from ragcord.knowledge.records import KnowledgeBaseRecords
from rpc.v1 import admin_pb2 as pb
from tests.harness import admin_api
from tests.openai_fake import FakeOpenAI

VENV_QUESTION = "How do I make a separate Python environment for my Quillstack project?"
OFF_TOPIC = "What is the boiling point of tungsten?"
INSTRUCTIONS = (
    "Answer as the Quillstack support team, warmly.\n"
    "NOT FOUND: Sorry, the Quillstack docs don't cover that. Ask in #help.\n"
    "header: Here is what the Quillstack docs say:"
)


def forget_record(records: KnowledgeBaseRecords) -> None:
    """Back to the shared fixture's state: `docs` without a record (its sources kept)."""
    records.redis.delete(records.record_key("docs"))
    records.redis.srem(records.names_key, "docs")


@pytest.fixture
def instructed(indexed) -> Iterator[KnowledgeBaseRecords]:
    """Knowledge base `docs` of the shared fixture with answer instructions, removed afterwards."""
    records = KnowledgeBaseRecords(indexed.redis, prefix=indexed.settings.key_prefix)
    records.update("docs", answer_instructions=INSTRUCTIONS)
    try:
        yield records
    finally:
        forget_record(records)


def test_the_instructions_format():
    parsed = parse_instructions(INSTRUCTIONS)
    assert parsed.not_found == "Sorry, the Quillstack docs don't cover that. Ask in #help."
    assert parsed.header == "Here is what the Quillstack docs say:"
    assert parsed.text == INSTRUCTIONS
    assert parse_instructions("Be brief.") == parse_instructions("Be brief.\n")
    assert (parse_instructions("Be brief.").not_found, parse_instructions("").header) == ("", "")
    assert not parse_instructions("  ")


def test_the_model_prompt_carries_the_instructions_after_our_rules(indexed, instructed):
    settings = indexed.settings.model_copy(update={"answerer": "openai"})
    with FakeOpenAI(reply=lambda body: "Run the venv module [1].") as fake:
        settings = settings.model_copy(update={"openai_base_url": fake.base_url, "openai_max_retries": 0})
        ask = build_ask_service(dataclasses.replace(indexed, settings=settings))
        answer = ask.ask(VENV_QUESTION, knowledge_base="docs")
        streamed = list(ask.ask_stream(VENV_QUESTION, knowledge_base="docs"))
        requests = fake.chat_requests()
    assert answer.citations and streamed[-1].citations
    for request in requests[-2:]:
        messages = request["messages"]
        assert messages[0] == {"role": "system", "content": SYSTEM}  # our rules first, untouched
        assert messages[1]["role"] == "system"
        assert INSTRUCTIONS in messages[1]["content"] and "cite them" in messages[1]["content"]
    # Another knowledge base without instructions: no operator message.
    instructed.update("docs", answer_instructions="")
    with FakeOpenAI(reply=lambda body: "Run the venv module [1].") as fake:
        settings = settings.model_copy(update={"openai_base_url": fake.base_url})
        build_ask_service(dataclasses.replace(indexed, settings=settings)).ask(
            VENV_QUESTION, knowledge_base="docs"
        )
        (request,) = fake.chat_requests()
    assert not any("operator_instructions" in m["content"] for m in request["messages"])


def test_the_extractive_answer_uses_the_header_and_the_refusal(indexed, instructed):
    ask = build_ask_service(indexed)
    found = ask.ask(VENV_QUESTION, knowledge_base="docs")
    assert found.found and found.text.startswith("Here is what the Quillstack docs say:\n\n**")
    refused = ask.ask(OFF_TOPIC, knowledge_base="docs")
    assert not refused.found
    assert refused.text.startswith("Sorry, the Quillstack docs don't cover that. Ask in #help.")
    assert "I couldn't find" not in refused.text
    streamed = list(ask.ask_stream(OFF_TOPIC, knowledge_base="docs"))
    assert streamed[0].startswith("Sorry, the Quillstack docs") and not streamed[-1].found


async def test_instructions_set_through_the_api_change_the_next_answer(indexed):
    settings = indexed.settings
    async with admin_api(settings, indexed) as (stub, _):
        before = await stub.Ask(pb.AskRequest(question=OFF_TOPIC, knowledge_base="docs"))
        await stub.UpdateKnowledgeBase(
            pb.UpdateKnowledgeBaseRequest(name="docs", answer_instructions="not found: Try #help instead.")
        )
        try:
            after = await stub.Ask(pb.AskRequest(question=OFF_TOPIC, knowledge_base="docs"))
        finally:
            forget_record(KnowledgeBaseRecords(indexed.redis, prefix=settings.key_prefix))
    assert "I couldn't find" in before.text and not before.found
    assert after.text.startswith("Try #help instead.") and not after.found
