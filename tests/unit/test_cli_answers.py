"""`ragcord ask` / `chat` in a terminal render the answer's markdown; into a pipe they print its text."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

import cli.answers
from rpc.v1 import admin_pb2 as pb

ANSWER = (
    "**Installation › Verify**\n\nRun this:\n\n```bash\nquill --version\n```\n\nIt prints the version. [1]"
)


class Stub:
    def AskStream(self, request, metadata, timeout):  # noqa: N802 - the RPC's name
        yield pb.AskStreamResponse(delta=ANSWER)
        citation = pb.Citation(number=1, url="http://d/docs/installation.html#verify", title="Installation")
        yield pb.AskStreamResponse(answer=pb.Answer(text=ANSWER, citations=[citation], conversation_id="c1"))


def run(monkeypatch, *, terminal: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=80, color_system=None)
    monkeypatch.setattr(cli.answers, "console", console)
    admin = SimpleNamespace(pb=pb, stub=Stub(), metadata=())
    assert cli.answers.stream_answer(admin, "how do i check the install?", "docs") == "c1"
    return out.getvalue()


def test_a_terminal_sees_the_markdown_rendered(monkeypatch):
    shown = run(monkeypatch, terminal=True)
    assert "**" not in shown and "```" not in shown  # bold and the fence are rendered, not printed
    assert "Installation › Verify" in shown and "quill --version" in shown
    assert "[1] Installation — http://d/docs/installation.html#verify" in shown


def test_a_pipe_gets_the_answers_own_text(monkeypatch):
    shown = run(monkeypatch, terminal=False)
    assert ANSWER in shown
