"""Markdown served raw (`text/markdown`, a `.md` on GitHub's raw host): headings cut sections with GitHub's
anchors, code fences stay whole with their language, lists and tables read as the HTML renderer writes them.

markdown-it-py (CommonMark, plus GitHub's tables) parses it; its token stream is flat, so nothing here
recurses however deep the nesting (markdown-it itself stops at 20 levels). Inline parsing, the slow part
(~100 KB/s), runs per paragraph, each bounded in size, and stops when the time budget does: later
paragraphs keep their raw text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import lxml.html
from lxml import etree
from markdown_it import MarkdownIt
from markdown_it.token import Token

from ragcord.errors import UnreadableFile
from ragcord.knowledge.chunking import Section
from workers.extraction.document import ExtractedPage
from workers.extraction.reading import (
    Budget,
    ReadLimits,
    absolute_link,
    file_title,
    short_line,
    within_bytes,
)

log = logging.getLogger(__name__)

# Block parsing runs on pieces of about this size, cut at blank lines outside code fences, so the time
# budget is checked between them (a 600 KB table alone takes markdown-it-py 15 s).
_PIECE_CHARS = 64_000
_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_MAX_INLINE_CHARS = 8_000  # a longer paragraph is kept as its raw text: inline parsing is superlinear
_MAX_HTML_CHARS = 20_000  # an HTML block larger than this is left out
_NO_LANGUAGE = frozenset(("", "text", "plain", "plaintext", "none", "nohighlight", "console-output"))
_SLUG_DROP = re.compile(r"[^\w\- ]", re.UNICODE)


def _parser() -> MarkdownIt:
    # Inline parsing is run by hand, paragraph by paragraph, within the budget.
    return MarkdownIt("commonmark", {"maxNesting": 20}).enable("table").disable("inline")


def github_slug(text: str, seen: dict[str, int]) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to `-`, repeats `-1`, `-2`."""
    base = _SLUG_DROP.sub("", text.strip().lower()).replace(" ", "-")
    count = seen.get(base, 0)
    seen[base] = count + 1
    return base if count == 0 else f"{base}-{count}"


@dataclass
class _List:
    ordered: bool
    number: int


@dataclass
class _Reader:
    md: MarkdownIt
    url: str
    budget: Budget
    env: dict[str, object]
    sections: list[Section] = field(default_factory=list)
    links: dict[str, None] = field(default_factory=dict)
    path: list[tuple[int, str, str]] = field(default_factory=list)  # (level, title, anchor)
    blocks: list[str] = field(default_factory=list)
    list_lines: list[str] = field(default_factory=list)
    lists: list[_List] = field(default_factory=list)
    item_started: list[bool] = field(default_factory=list)  # per open list item: its first line is written
    cells: list[str] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    slugs: dict[str, int] = field(default_factory=dict)
    title: str | None = None
    inline_cut: bool = False

    # -- sections

    def add_block(self, text: str) -> None:
        text = text.strip("\n")
        if text.strip():
            self.blocks.append(text)

    def flush_section(self) -> None:
        self.flush_list()
        if self.blocks and not self.budget.spent:
            anchor = self.path[-1][2] if self.path else ""
            text = self.budget.take("\n\n".join(self.blocks))
            if text.strip():
                self.sections.append(Section(tuple(t for _, t, _ in self.path), anchor, text))
        self.blocks = []

    def heading(self, level: int, title: str) -> None:
        self.flush_section()
        anchor = github_slug(title, self.slugs)
        if self.title is None and level == 1:
            self.title = title
        self.path = [p for p in self.path if p[0] < level] + [(level, title, anchor)]

    # -- lists: one block of `- item` / `1. item` lines, indented by depth

    def flush_list(self) -> None:
        if self.list_lines:
            self.add_block("\n".join(self.list_lines))
            self.list_lines = []

    def text_block(self, text: str) -> None:
        """A paragraph: inside a list, the item's line (or a continuation of it); else a block of its own."""
        if not self.lists:
            self.add_block(text)
            return
        depth = len(self.lists) - 1
        indent = "  " * depth
        if self.item_started and not self.item_started[-1]:
            current = self.lists[-1]
            marker = f"{current.number}." if current.ordered else "-"
            if current.ordered:
                current.number += 1
            self.item_started[-1] = True
            lines = text.split("\n")
            self.list_lines.append(f"{indent}{marker} {lines[0]}")
            self.list_lines.extend(f"{indent}  {line}" for line in lines[1:])
        else:
            self.list_lines.extend(f"{indent}  {line}" for line in text.split("\n"))

    def code(self, text: str, language: str) -> None:
        self.flush_list()
        text = text.rstrip("\n")
        if not text.strip():
            return
        fence = "```"
        while fence in text:
            fence += "`"
        language = "" if language.lower() in _NO_LANGUAGE else language
        self.add_block(f"{fence}{language}\n{text}\n{fence}")

    # -- inline

    def inline(self, token: Token) -> str:
        content = token.content
        if len(content) > _MAX_INLINE_CHARS or self.inline_cut:
            return " ".join(content.split())
        if self.budget.expired():
            self.inline_cut = True
            seconds = self.budget.limits.max_seconds
            self.budget.note(f"reading stopped after {seconds:g}s: the rest is kept as raw text")
            return " ".join(content.split())
        children: list[Token] = []
        self.md.inline.parse(content, self.md, self.env, children)
        return self.render_inline(children)

    def render_inline(self, children: Sequence[Token]) -> str:
        out: list[str] = []
        for child in children:
            kind = child.type
            if kind == "text":
                out.append(child.content)
            elif kind == "code_inline":
                out.append(f"`{child.content}`")
            elif kind == "softbreak":
                out.append(" ")
            elif kind == "hardbreak":
                out.append("\n")
            elif kind == "link_open":
                if (link := absolute_link(self.url, str(child.attrs.get("href") or ""))) is not None:
                    self.links[link] = None
            elif kind == "image":
                out.append(self.render_inline(child.children or []))
            elif kind == "html_inline":
                continue  # a tag (<br>, <kbd>): its text, if any, is a text token around it
        return "".join(out).strip()

    def html(self, raw: str) -> None:
        """An HTML block (a README's centred logo, a <details>): its text and links."""
        if len(raw) > _MAX_HTML_CHARS or not raw.strip():
            return
        try:
            fragment = lxml.html.fragment_fromstring(raw, create_parent="div")
        except (etree.ParserError, etree.XMLSyntaxError, ValueError):
            return
        for anchor in fragment.iter("a"):
            if (link := absolute_link(self.url, anchor.get("href"))) is not None:
                self.links[link] = None
        text = " ".join(fragment.text_content().split())
        if text:
            self.text_block(text)

    # -- the token stream

    def read(self, tokens: Sequence[Token]) -> None:
        index = 0
        while index < len(tokens) and not self.budget.spent:
            token = tokens[index]
            kind = token.type
            if kind == "heading_open":
                title = " ".join(self.inline(tokens[index + 1]).split()) if index + 1 < len(tokens) else ""
                self.heading(int(token.tag[1:]), title or "(untitled)")
                index += 3
                continue
            if kind == "inline":
                self.text_block(self.inline(token))
            elif kind in ("fence", "code_block"):
                self.code(token.content, (token.info or "").strip().split(" ")[0])
            elif kind == "html_block":
                self.html(token.content)
            elif kind in ("bullet_list_open", "ordered_list_open"):
                if not self.lists:
                    self.flush_list()
                start = str(token.attrs.get("start", 1))
                self.lists.append(_List(kind == "ordered_list_open", int(start) if start.isdigit() else 1))
            elif kind in ("bullet_list_close", "ordered_list_close"):
                self.lists.pop()
                if not self.lists:
                    self.flush_list()
            elif kind == "list_item_open":
                self.item_started.append(False)
            elif kind == "list_item_close":
                self.item_started.pop()  # an item with no text leaves no line
            elif kind in ("th_open", "td_open"):
                self.cells.append(self.inline(tokens[index + 1]) if index + 1 < len(tokens) else "")
                index += 3
                continue
            elif kind == "tr_close":
                self.rows.append(" | ".join(self.cells))
                self.cells = []
            elif kind == "table_close":
                self.flush_list()
                self.add_block("\n".join(self.rows))
                self.rows = []
            index += 1
        self.flush_section()


def read_markdown(text: str, url: str, limits: ReadLimits) -> ExtractedPage:
    """Sections of a Markdown file: one per heading, anchored as GitHub anchors it."""
    budget = Budget(limits)
    text = within_bytes(text, limits.max_markup_bytes, budget)
    declared, text = _front_matter(text)
    md = _parser()
    env: dict[str, object] = {}  # link reference definitions, shared by every piece
    tokens: list[Token] = []
    try:
        for piece in _pieces(text, _PIECE_CHARS):
            if tokens and budget.expired():
                budget.note(f"reading stopped after {limits.max_seconds:g}s: the rest is left out")
                break
            tokens.extend(md.parse(piece, env))
    except RecursionError:
        raise UnreadableFile("the Markdown is nested too deeply to read") from None
    reader = _Reader(md, url, budget, env)
    reader.read(tokens)
    if not reader.sections:
        raise UnreadableFile("the Markdown file has no text", links=list(reader.links))
    title = (
        declared or reader.title or next((s.heading_path[0] for s in reader.sections if s.heading_path), None)
    )
    first_line = short_line(reader.sections[0].text.split("\n", 1)[0], 120)
    return ExtractedPage(
        title=title or first_line or file_title(url),
        canonical=None,
        links=list(reader.links),
        sections=reader.sections,
        notes=tuple(budget.notes),
    )


def _pieces(text: str, size: int) -> Iterator[str]:
    """`text` in pieces of about `size` characters, each ending at a blank line outside a code fence; a
    piece with no such line is cut at a line when four times as long (only hostile files have none)."""
    piece: list[str] = []
    length = 0
    fence: str | None = None
    for line in text.split("\n"):
        piece.append(line)
        length += len(line) + 1
        if match := _FENCE_LINE.match(line):
            if fence is None:
                fence = match.group(1)[0] * 3
            elif match.group(1).startswith(fence):
                fence = None
        if length >= size and ((fence is None and not line.strip()) or length >= 4 * size):
            yield "\n".join(piece)
            piece, length, fence = [], 0, None
    if piece:
        yield "\n".join(piece)


def _front_matter(text: str) -> tuple[str | None, str]:
    """The title a Jekyll/Hugo/MkDocs front matter block declares, and the text without the block (read
    as Markdown, its closing `---` would make its last line a heading)."""
    match = _FRONT_MATTER.match(text[:20_000])
    if match is None:
        return None, text
    title = _FRONT_TITLE.search(match.group(1))
    declared = short_line(title.group(1).strip("\"'")) if title else None
    return declared, text[match.end() :]
