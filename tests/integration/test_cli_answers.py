"""`ragcord ask`, `chat` and `sources` against a running admin API, as an operator runs them: the console
script with its output into a pipe, or in a terminal (a pseudo-terminal) for what only a terminal does."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from ragcord.bootstrap import bootstrap
from tests.harness import admin_api
from tests.integration.test_admin_api import chunk

RAGCORD = str(Path(sys.executable).parent / "ragcord")
# Longer than any terminal's 80 columns, with the section anchor a citation carries.
URL = "http://docs.example/manual/operations/logging-and-metrics/configuration.html#logging-to-standard-error"
CONVERSATION = re.compile(r"conversation (\S+): ask a follow-up with --conversation (\S+)")
NOT_FOUND = "error: NOT_FOUND: knowledge base 'nokb' does not exist; existing: docs"
# A child of a new session takes the pseudo-terminal as its controlling terminal, so that Ctrl-C typed
# there is a SIGINT, then becomes the command (no preexec_fn: the test process runs threads).
IN_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


@pytest.fixture
async def server(make_settings, tmp_path):
    """A running admin API whose only knowledge base, `docs`, holds one page; yields the CLI's environment."""
    settings = make_settings()
    services = bootstrap(settings)
    services.store.replace_page("docs", URL, [chunk(URL)])
    async with admin_api(settings, services) as (_, address):
        yield {"PATH": "/usr/bin:/bin", "RAGCORD_GRPC_ADDRESS": address, "RAGCORD_ADMIN_TOKEN": ""}
    services.close()


async def ragcord(env: dict[str, str], *args: str, input: str = "") -> subprocess.CompletedProcess[str]:  # noqa: A002
    """The console script, its output into pipes; run in a thread so the server keeps answering."""
    return await asyncio.to_thread(
        subprocess.run,
        [RAGCORD, *args],
        input=input,
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parent,  # no operator's .env
        timeout=120,
    )


@pytest.mark.parametrize(
    "command",
    [
        ["ask", "How do I install it?", "--kb", "nokb"],
        ["sources", "--kb", "nokb"],
        ["sources", "--kb", "nokb", "--show", "http://x/"],
        ["chat", "--kb", "nokb"],
    ],
    ids=["ask", "sources", "sources --show", "chat"],
)
async def test_a_knowledge_base_that_does_not_exist_exits_1_naming_the_ones_that_do(server, command):
    result = await ragcord(server, *command, input="hello\n")

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [NOT_FOUND]
    assert result.stdout == ""  # chat: said before its prompt, not after a question


async def test_into_a_pipe_each_source_stays_on_one_line_with_its_url(server):
    result = await ragcord(server, "ask", "What is the text of it?", "--kb", "docs")

    assert result.returncode == 0, result.stderr
    assert f"  [1] T — {URL}" in result.stdout.splitlines()


async def test_ask_names_its_conversation_on_stderr_so_a_follow_up_can_continue_it(server):
    first = await ragcord(server, "ask", "What is the text of it?", "--kb", "docs")

    assert first.returncode == 0, first.stderr
    said = CONVERSATION.fullmatch(first.stderr.strip())
    assert said is not None and said[1] == said[2], first.stderr
    assert "conversation" not in first.stdout  # a pipe gets the answer and its sources only

    follow_up = await ragcord(server, "ask", "and what else?", "--kb", "docs", "--conversation", said[1])

    assert follow_up.returncode == 0, follow_up.stderr
    assert follow_up.stderr.strip() == first.stderr.strip()  # the same conversation, continued


async def test_chat_lists_its_commands_and_quits_on_end_of_input_with_a_newline(server):
    result = await ragcord(server, "chat", "--kb", "docs", input="/help\n")

    assert result.returncode == 0, result.stderr
    assert "/clear  forget the conversation" in result.stdout
    assert "Ctrl-D or Ctrl-C  quit" in result.stdout
    assert result.stdout.endswith("\n")


def in_terminal(env: dict[str, str], args: list[str], keys: bytes, after: bytes) -> tuple[int, str]:
    """Run the command in a pseudo-terminal, type `keys` once it has shown `after`; (exit code, output)."""
    controller, terminal = os.openpty()
    fcntl.ioctl(controller, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-c", IN_TERMINAL, RAGCORD, *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**env, "TERM": "xterm"},
        cwd=Path(__file__).parent,
        start_new_session=True,
    )
    os.close(terminal)
    shown, typed = b"", False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not typed and after in shown:
                os.write(controller, keys)
                typed = True
            if select.select([controller], [], [], 0.5)[0]:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # EIO: the command has exited and closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    assert typed, f"{after!r} never shown: {shown!r}"
    return code, shown.decode(errors="replace")


async def test_ctrl_c_quits_chat_with_exit_0_and_leaves_the_shell_prompt_a_new_line(server):
    code, shown = await asyncio.to_thread(
        in_terminal,
        server,
        ["chat", "--kb", "docs"],
        keys=b"\x03",
        after=b"you>",  # (in colour)
    )

    assert code == 0, shown
    assert "Traceback" not in shown
    assert shown.endswith("\n"), repr(shown)
