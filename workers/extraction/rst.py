"""reStructuredText served raw (`text/x-rst`, a `.rst` on GitHub's raw host), read line by line.

docutils is not a dependency (and would need its file inclusion and raw directives turned off to read a
crawled file safely); this reader knows what carries the text of a README or a docs page: section titles
(underlined, or over- and underlined; levels in the order their styles first appear), code (`::` literal
blocks, `code-block`/`code`/`sourcecode` directives with their language), lists, admonitions (their body
kept), hyperlinks (followed) and inline markup (roles and emphasis dropped, literals backticked).
Other directives (images, substitutions, comments) are left out. One pass, no recursion.
"""

from __future__ import annotations

import re
import unicodedata

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

_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}\s*$")  # a line of one punctuation character, 3 or more
_DIRECTIVE = re.compile(r"^\.\.\s+([\w:-]+)::\s*(.*)$")
_TARGET = re.compile(r"^\.\.\s+_([^:]+|`[^`]+`):\s*(\S*)\s*$")
_BULLET = re.compile(r"^([-*+•])\s+")
_CODE_DIRECTIVES = frozenset(("code-block", "code", "sourcecode", "literalinclude-off"))
_KEPT_DIRECTIVES = frozenset(
    "note warning tip hint important caution danger attention error admonition seealso "
    "versionadded versionchanged deprecated topic sidebar rubric container".split()
)
_TITLED_DIRECTIVES = frozenset(
    "admonition topic sidebar rubric container versionadded versionchanged deprecated".split()
)
_EMBEDDED_LINK = re.compile(r"`([^`<]*?)\s*<([^<>`]+)>`__?")
_ROLE = re.compile(r":[\w:+-]+:`([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")
_REFERENCE = re.compile(r"`([^`]+)`__?")
_EMPHASIS = re.compile(r"(\*\*|\*)(\S(?:.*?\S)?)\1")
_NAMED_REF = re.compile(r"\b([A-Za-z0-9][\w.-]*?[A-Za-z0-9]|[A-Za-z0-9])__?(?!\w)")
_SUBSTITUTION = re.compile(r"\|([^|\s][^|]*)\|_{0,2}")
_NO_LANGUAGE = frozenset(("", "text", "none", "default", "rst", "output"))


def docutils_id(title: str) -> str:
    """The id docutils (and GitHub) give a section title: ASCII lower case, other runs of characters `-`."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title).strip("-")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


class _Reader:
    def __init__(self, url: str, budget: Budget) -> None:
        self.url = url
        self.budget = budget
        self.styles: list[tuple[str, bool]] = []  # (character, overlined), in order of first use: the levels
        self.path: list[tuple[int, str, str]] = []
        self.blocks: list[str] = []
        self.sections: list[Section] = []
        self.links: dict[str, None] = {}
        self.title: str | None = None
        self.language = ""  # `.. highlight:: python` sets it for later `::` blocks

    def flush(self) -> None:
        if self.blocks and not self.budget.spent:
            text = self.budget.take("\n\n".join(self.blocks))
            if text.strip():
                anchor = self.path[-1][2] if self.path else ""
                self.sections.append(Section(tuple(t for _, t, _ in self.path), anchor, text))
        self.blocks = []

    def heading(self, title: str, style: tuple[str, bool]) -> None:
        self.flush()
        if style not in self.styles:
            self.styles.append(style)
        level = self.styles.index(style) + 1
        title = self.inline(title).replace("`", "")
        if self.title is None:
            self.title = title
        self.path = [p for p in self.path if p[0] < level] + [(level, title, docutils_id(title))]

    def link(self, href: str) -> None:
        if (link := absolute_link(self.url, href)) is not None:
            self.links[link] = None

    def inline(self, text: str) -> str:
        def embedded(match: re.Match[str]) -> str:
            self.link(match.group(2))
            return match.group(1) or match.group(2)

        text = _EMBEDDED_LINK.sub(embedded, text)
        text = _ROLE.sub(lambda m: f"`{_role_text(m.group(1))}`", text)
        text = _LITERAL.sub(lambda m: f"`{m.group(1)}`", text)
        text = _REFERENCE.sub(lambda m: m.group(1), text)
        text = _EMPHASIS.sub(lambda m: m.group(2), text)
        text = _SUBSTITUTION.sub(lambda m: m.group(1), text)
        return _NAMED_REF.sub(lambda m: m.group(1), text).strip()

    def code(self, lines: list[str], language: str) -> None:
        body = _dedent(lines)
        if not body.strip():
            return
        fence = "```"
        while fence in body:
            fence += "`"
        language = "" if language.lower() in _NO_LANGUAGE else language
        self.blocks.append(f"{fence}{language}\n{body}\n{fence}")

    def paragraph(self, lines: list[str]) -> None:
        """Consecutive lines: list items one per line (continuations joined), prose one paragraph."""
        items: list[str] = []
        for line in lines:
            stripped = line.strip()
            bullet = _BULLET.match(stripped)
            enumerated = re.match(r"^(\d+|#|[a-zA-Z])[.)]\s+", stripped)
            if bullet or enumerated or not items or stripped.startswith(":"):
                marker = "- " if bullet else ""
                rest = stripped[bullet.end() :] if bullet else stripped
                items.append(" " * min(_indent(line), 8) + marker + rest)
            else:
                items[-1] += " " + stripped
        text = "\n".join(self.inline(item) if item.strip() else item for item in items)
        if text.strip():
            self.blocks.append(text)

    def read(self, lines: list[str]) -> None:
        i = 0
        count = len(lines)
        while i < count and not self.budget.spent:
            line = lines[i]
            stripped = line.strip()
            if not stripped:
                i += 1
                continue
            # An over- and underlined title.
            if (
                _ADORNMENT.match(line)
                and i + 2 < count
                and lines[i + 1].strip()
                and not _ADORNMENT.match(lines[i + 1])
                and lines[i + 2].strip() == stripped
            ):
                self.heading(lines[i + 1].strip(), (stripped[0], True))
                i += 3
                continue
            # An underlined title.
            if (
                i + 1 < count
                and _indent(line) == 0
                and not _ADORNMENT.match(line)
                and (under := _ADORNMENT.match(lines[i + 1]))
                and len(lines[i + 1].rstrip()) >= min(len(stripped), 3)
                and not stripped.startswith(".. ")
            ):
                self.heading(stripped, (under.group(1), False))
                i += 2
                continue
            if _ADORNMENT.match(line):  # a transition
                i += 1
                continue
            if stripped.startswith(".."):
                i = self.directive(lines, i)
                continue
            # A paragraph: lines up to a blank line or a title's underline.
            start = i
            while (
                i < count
                and lines[i].strip()
                and not (i + 1 < count and _ADORNMENT.match(lines[i + 1]) and i > start)
                and not (i > start and lines[i].strip().startswith(".. "))
            ):
                i += 1
            block = lines[start:i]
            literal = block[-1].rstrip().endswith("::")
            if literal:  # `text::` reads `text:`, `text ::` reads `text`, a lone `::` nothing
                head = block[-1].rstrip()[:-2]
                if not head.strip():
                    block = block[:-1]
                else:
                    block[-1] = head.rstrip() if head.endswith(" ") else head + ":"
            if block:
                self.paragraph(block)
            if literal:
                i = self.indented(lines, i, _indent(lines[start]), self.language)
        self.flush()

    def indented(self, lines: list[str], i: int, base: int, language: str | None) -> int:
        """The block indented past `base` from line `i`: code when `language` is not None. Returns its end."""
        body: list[str] = []
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
            body.append(lines[i])
            i += 1
        if language is not None:
            self.code(body, language)
        return i

    def directive(self, lines: list[str], i: int) -> int:
        line = lines[i].strip()
        base = _indent(lines[i])
        if target := _TARGET.match(line):
            self.link(target.group(2))
            return i + 1
        match = _DIRECTIVE.match(line)
        if match is None:  # a comment (with whatever is indented under it)
            body: list[str] = []
            return self._skip(lines, i + 1, base, body)
        name, argument = match.group(1).lower(), match.group(2).strip()
        i += 1
        while i < len(lines) and lines[i].strip().startswith(":") and _indent(lines[i]) > base:
            i += 1  # the directive's options
        if name in _CODE_DIRECTIVES:
            return self.indented(lines, i, base, argument.split(" ")[0] if argument else self.language)
        if name == "highlight":
            self.language = argument.split(" ")[0]
            return i
        if name in _KEPT_DIRECTIVES:
            body = []
            end = self._skip(lines, i, base, body)
            label = name.capitalize() if name != "admonition" else ""
            if name in _TITLED_DIRECTIVES:  # their argument is a title or a version; others' is body text
                prefix = " ".join(part for part in (label, argument) if part)
            else:
                prefix, body = label, [argument, *body]
            text = self.inline(" ".join(_dedent(body).split()))
            if prefix or text:
                self.blocks.append(f"{prefix}: {text}" if prefix and text else prefix or text)
            return end
        return self._skip(lines, i, base, [])

    @staticmethod
    def _skip(lines: list[str], i: int, base: int, into: list[str]) -> int:
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
            into.append(lines[i])
            i += 1
        return i


def _role_text(text: str) -> str:
    """`title <target>` in a role is its title; `~module.name` is `name`."""
    if match := re.match(r"^(.*?)\s*<[^>]+>$", text):
        text = match.group(1) or text
    return text.lstrip("~!").rsplit(".", 1)[-1] if text.startswith("~") else text.lstrip("!")


def _dedent(lines: list[str]) -> str:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    while lines and not lines[0].strip():
        lines = lines[1:]
    depth = min((_indent(line) for line in lines if line.strip()), default=0)
    return "\n".join(line[depth:].rstrip() for line in lines)


def read_rst(text: str, url: str, limits: ReadLimits) -> ExtractedPage:
    """Sections of a reStructuredText file: one per section title, anchored by the title's docutils id."""
    budget = Budget(limits)
    text = within_bytes(text, limits.max_markup_bytes, budget)
    reader = _Reader(url, budget)
    reader.read(text.expandtabs(8).split("\n"))
    if not reader.sections:
        raise UnreadableFile("the reStructuredText file has no text", links=list(reader.links))
    first_line = short_line(reader.sections[0].text.split("\n", 1)[0], 120)
    return ExtractedPage(
        title=reader.title or first_line or file_title(url),
        canonical=None,
        links=list(reader.links),
        sections=reader.sections,
        notes=tuple(budget.notes),
    )
