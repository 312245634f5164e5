"""Questions through the admin API: `ask` (one answer, streamed) and `chat` (a conversation with memory)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape

from cli.admin import Admin
from cli.console import console, err
from ragcord.settings import Settings

if TYPE_CHECKING:
    from rpc.v1.admin_pb2 import Answer

ANSWER_TIMEOUT_SECONDS = 300
CLEAR_COMMAND = "/clear"
HELP_COMMAND = "/help"
CHAT_HELP = (
    "Type a question and press Enter; follow-up questions use what was said before.\n"
    f"  {CLEAR_COMMAND}  forget the conversation and start a new one\n"
    f"  {HELP_COMMAND}   show this help\n"
    "  Ctrl-D or Ctrl-C  quit"
)


def stream_answer(admin: Admin, question: str, kb: str, conversation_id: str = "") -> str:
    """Print the answer as it is written, then its sources; returns the conversation id."""
    answer = print_answer(admin, question, kb, conversation_id)
    return answer.conversation_id if answer is not None else conversation_id


def print_answer(admin: Admin, question: str, kb: str, conversation_id: str = "") -> Answer | None:
    """Print the answer as it is written, then its sources; returns the Answer (None if none came)."""
    request = admin.pb.AskRequest(question=question, knowledge_base=kb, conversation_id=conversation_id)
    answer: Answer | None = None
    events = admin.stub.AskStream(request, metadata=admin.metadata, timeout=ANSWER_TIMEOUT_SECONDS)
    if console.is_terminal:
        # Rendered as it is written: headings, bold section titles, code blocks, links.
        text = ""
        with Live(Markdown(""), console=console, refresh_per_second=8, vertical_overflow="visible") as live:
            for event in events:
                if event.HasField("answer"):
                    answer = event.answer
                else:
                    text += event.delta
                    live.update(Markdown(text))
    else:  # a pipe gets the answer's own text, markdown and all
        for event in events:
            if event.HasField("answer"):
                answer = event.answer
            else:
                console.print(event.delta, end="", markup=False, highlight=False, soft_wrap=True)
        console.print()
    if answer is not None and answer.citations:
        console.print("[dim]Sources:[/]")
        for citation in answer.citations:
            console.print(f"  [{citation.number}] {citation.title} — {citation.url}", markup=False)
    return answer


def cmd_ask(settings: Settings, args: argparse.Namespace) -> int:
    admin = Admin(settings, args.address)
    kb = args.kb or settings.default_knowledge_base
    answer = print_answer(admin, args.question, kb, args.conversation or "")
    if answer is not None and answer.conversation_id:
        show_conversation(answer.conversation_id)
    return 0


def show_conversation(conversation_id: str) -> None:
    """The id the server chose is the only way to a follow-up; on stderr, so stdout stays the answer."""
    cid = escape(conversation_id)
    err.print(f"[dim]conversation {cid}: ask a follow-up with --conversation {cid}[/]", soft_wrap=True)


def check_knowledge_base(admin: Admin, kb: str) -> None:
    """Raise the server's NOT_FOUND (the one `ask` gets) when `kb` does not exist.

    ListSources says whether it does, a first crawl under way included; it is asked only about a name
    ListKnowledgeBases lacks, so a large knowledge base is never listed whole for this.
    """
    listed = admin.call("ListKnowledgeBases", admin.pb.ListKnowledgeBasesRequest())
    if kb not in {base.name for base in listed.knowledge_bases}:
        admin.call("ListSources", admin.pb.ListSourcesRequest(knowledge_base=kb))


def cmd_chat(settings: Settings, args: argparse.Namespace) -> int:
    """A terminal conversation with memory: follow-up questions use what was said before."""
    admin = Admin(settings, args.address)
    kb = args.kb or settings.default_knowledge_base
    check_knowledge_base(admin, kb)  # before the prompt: no question typed in vain
    conversation_id = ""
    console.print(
        f"Ask about knowledge base [bold]{kb}[/]. {CLEAR_COMMAND} forgets the conversation, "
        f"{HELP_COMMAND} lists the commands; Ctrl-D quits."
    )
    while True:
        try:
            question = console.input("[bold green]you>[/] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()  # the shell's prompt starts on a line of its own
            return 0
        if not question:
            continue
        if question == HELP_COMMAND:
            console.print(CHAT_HELP, markup=False, highlight=False)
            continue
        if question == CLEAR_COMMAND:
            if conversation_id:
                admin.call(
                    "ClearConversation", admin.pb.ClearConversationRequest(conversation_id=conversation_id)
                )
            conversation_id = ""
            console.print("[dim]conversation forgotten[/]")
            continue
        try:
            conversation_id = stream_answer(admin, question, kb, conversation_id)
        except admin.grpc.RpcError as exc:
            err.print(f"[red]error[/]: {escape(admin.explain(exc) or str(exc))}")
