"""The DOM walker: the content element to sections of clean text, the form that is stored and searched.

Prose is whitespace-normalised into paragraphs, lists become `- item` / `1. item` lines, tables one row
per line with cells joined by ` | `, code blocks stay whole as fenced blocks with their language, inline
code is `backticked` (API signatures are left bare), and headings and API entries cut sections.
Nothing is escaped: escaping belongs to whoever renders the text (the Discord renderer).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from lxml.html import HtmlElement

from ragcord.knowledge.chunking import Section

_HEADING_LEVELS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
# On the open web a "heading" this long is a paragraph styled as one (a lead): it is read as text.
_HEADING_MAX_WORDS = 24
_LAYOUT_TAGS = ("p", "div", "ul", "ol", "table", "h1", "h2", "h3", "h4")
_API_LEVEL = 7  # API entries nest below any heading
# Inline code keeps markdown backticks: they read as code in Discord and measured better for MiniLM on
# our fixture site (identifiers stand apart); keyword search tokenises on punctuation, so `lru_cache`
# is still found as lru_cache. Signatures (dt) are left bare.
_INLINE_CODE = frozenset(("code", "tt", "kbd", "samp"))
_BLOCK_TAGS = frozenset(
    "html body p div section article main blockquote figure figcaption address center details summary "
    "fieldset legend header footer caption thead tbody tfoot tr td th li dt dd".split()
)
_CODE_CLASS = re.compile(r"^(?:highlight|language|lang|sourceCode)-([A-Za-z0-9_+#.-]+)$")
_NO_LANGUAGE = frozenset(("default", "none", "text", "plain", "plaintext", "nohighlight", "output"))
_SECTION_CONTAINER_HINTS = ("section", "chapter", "sect", "appendix", "level-extent", "refentry")
_GLYPHS = frozenset(("¶", "◆", "§"))
# Decides, block by block, what of a page is content: (kind, text) -> the text to keep, or None to drop.
# Kinds: "text" (a paragraph or heading-less run), "code", "list", "table", "term" (a dt).
BlockFilter = Callable[[str, str], str | None]
_ENTRY_NAME = (
    ".//*[contains(concat(' ', normalize-space(@class), ' '), ' sig-name ')"
    " or contains(concat(' ', normalize-space(@class), ' '), ' descname ')]"
)


def _classes(el: HtmlElement) -> list[str]:
    return (el.get("class") or "").split()


def _normal(text: str) -> str:
    """Whitespace collapsed, stray permalink glyphs gone (a § before a number cites a section: it stays)."""
    words = text.split()
    return " ".join(
        word
        for i, word in enumerate(words)
        if word not in _GLYPHS or (word == "§" and i + 1 < len(words) and words[i + 1][:1].isdigit())
    )


def _heading_level(el: HtmlElement) -> int | None:
    level = _HEADING_LEVELS.get(el.tag)
    if level is None and el.tag == "div" and "title" in _classes(el):
        parent = el.getparent()
        if parent is not None and "headertitle" in _classes(parent):
            return 1  # Doxygen's page title
    return level


def _has_id(el: HtmlElement) -> str:
    return str(el.get("id") or (el.get("name") if el.tag == "a" else None) or "")


def heading_anchor(heading: HtmlElement, root: HtmlElement) -> str:
    """The fragment that lands on `heading`: its id, its section's, an anchor inside it or just before it."""
    if anchor := str(heading.get("id") or ""):
        return anchor
    for ancestor in heading.iterancestors():
        if ancestor is root or ancestor.tag not in ("section", "div", "article"):
            break
        if anchor := str(ancestor.get("id") or ""):
            is_section = ancestor.tag != "div" or any(
                hint in c.lower() for c in _classes(ancestor) for hint in _SECTION_CONTAINER_HINTS
            )
            first = next(ancestor.iter(*_HEADING_LEVELS), None)
            if is_section and first is heading:
                return anchor
            break
    for inner in heading.iter("a", "span"):
        if anchor := _has_id(inner):
            return anchor
    sibling = heading.getprevious()
    for _ in range(2):
        if sibling is None or sibling.tag not in ("a", "span") or _normal(sibling.text_content()):
            break
        if anchor := _has_id(sibling):
            return anchor
        sibling = sibling.getprevious()
    return ""


def _language(pre: HtmlElement) -> str:
    """The code block's language where the page names it (Sphinx highlight-x, language-x, data-lang)."""
    candidates = [pre, *pre.iterchildren("code")]
    candidates += [a for _, a in zip(range(3), pre.iterancestors(), strict=False)]
    for el in candidates:
        if lang := el.get("data-lang"):
            return lang.lower() if lang.lower() not in _NO_LANGUAGE else ""
        for cls in _classes(el):
            if match := _CODE_CLASS.match(cls):
                lang = match.group(1).lower()
                return "" if lang in _NO_LANGUAGE else lang
    return ""


def _code_text(el: HtmlElement) -> str:
    if el.tag == "pre":
        raw = el.text_content()
    else:  # Doxygen's div.fragment: one div.line per line
        raw = "\n".join(line.text_content() for line in el.iter("div") if "line" in _classes(line))
    lines = [line.rstrip() for line in raw.replace("\r\n", "\n").replace("\xa0", " ").split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def _is_api_entry(dt: HtmlElement) -> bool:
    """A Sphinx object description (`dt.sig id="functools.lru_cache"`), not a glossary or index term."""
    return bool(dt.get("id")) and ("sig" in _classes(dt) or bool(dt.xpath(_ENTRY_NAME)))


def _is_layout(table: HtmlElement) -> bool:
    """A table that lays out a page (its cells hold paragraphs, lists, tables): read as blocks, not rows."""
    return next(table.iterdescendants(*_LAYOUT_TAGS), None) is not None


def _is_fragment(el: HtmlElement) -> bool:
    return el.tag == "div" and "fragment" in _classes(el)


class _Walker:
    """Collects blocks of text; the root walker also cuts them into sections at headings and API entries."""

    def __init__(
        self, root: HtmlElement, *, sectioned: bool, mark_code: bool = True, keep: BlockFilter | None = None
    ) -> None:
        self.root = root
        self.sectioned = sectioned
        self.mark_code = mark_code
        self.keep = keep
        self.sections: list[Section] = []
        self.blocks: list[str] = []
        self.inline: list[str] = []
        self.path: list[tuple[int, str, str]] = []  # (level, title, anchor)

    # -- output ---------------------------------------------------------------------------------------

    def emit(self, kind: str, text: str) -> None:
        if self.keep is not None:
            kept = self.keep(kind, text)
            if not kept:
                return
            text = kept
        self.blocks.append(text)

    def flush(self) -> None:
        if self.inline:
            if text := _normal("".join(self.inline)):
                self.emit("text", text)
            self.inline = []

    def add_block(self, text: str, kind: str = "text") -> None:
        self.flush()
        if text.strip():
            self.emit(kind, text)

    def open_section(self, path: list[tuple[int, str, str]]) -> None:
        self.flush()
        if self.blocks:
            anchor = next((a for _, _, a in reversed(self.path) if a), "")
            heading = tuple(title for _, title, _ in self.path)
            self.sections.append(Section(heading, anchor, "\n\n".join(self.blocks)))
            self.blocks = []
        self.path = path

    def finish(self) -> list[Section]:
        self.open_section([])
        return self.sections

    def capture(self, el: HtmlElement, *, mark_code: bool = True) -> list[str]:
        """The blocks of `el` rendered on their own (a list item, a table cell): no sections inside."""
        walker = _Walker(self.root, sectioned=False, mark_code=mark_code and self.mark_code)
        walker.children(el)
        walker.flush()
        return walker.blocks

    # -- walking --------------------------------------------------------------------------------------

    def children(self, el: HtmlElement) -> None:
        if el.text:
            self.inline.append(el.text)
        for child in el:
            self.node(child)

    def node(self, el: HtmlElement) -> None:
        tag = el.tag
        if isinstance(tag, str):
            if (level := _heading_level(el)) is not None:
                self.heading(el, level)
            elif tag == "pre" or _is_fragment(el):
                self.code(el)
            elif tag in ("ul", "ol", "menu"):
                self.items(el, ordered=tag == "ol")
            elif tag == "dl":
                self.definitions(el)
            elif tag == "table" and el.find(".//pre") is None and not (self.keep and _is_layout(el)):
                self.table(el)
            elif tag in _INLINE_CODE and self.mark_code:
                self.inline_code(el)
            elif tag in ("br", "img", "wbr"):
                self.inline.append(" ")
            elif tag == "hr":
                self.flush()
            elif tag in _BLOCK_TAGS or tag == "table":
                self.flush()
                self.children(el)
                self.flush()
            else:
                self.children(el)
        if el.tail:
            self.inline.append(el.tail)

    def heading(self, el: HtmlElement, level: int) -> None:
        title = _normal(el.text_content())
        if not title:
            return
        if not self.sectioned:
            self.add_block(title)
            return
        if self.keep is not None and len(title.split()) > _HEADING_MAX_WORDS:
            self.add_block(title)  # a lead paragraph styled as a heading
            return
        if self.keep is not None and not self.keep("heading", title):
            return  # a heading of the page's chrome ("Related posts", "Leave a comment")
        anchor = heading_anchor(el, self.root)
        self.open_section([p for p in self.path if p[0] < level] + [(level, title, anchor)])

    def inline_code(self, el: HtmlElement) -> None:
        code = _normal(el.text_content())
        if code:
            self.inline.append(f"`{code}`" if "`" not in code else code)

    def code(self, el: HtmlElement) -> None:
        code = _code_text(el)
        if not code:
            return
        fence = "```"
        while fence in code:
            fence += "`"
        self.add_block(f"{fence}{_language(el)}\n{code}\n{fence}", "code")

    def items(self, el: HtmlElement, *, ordered: bool) -> None:
        self.flush()
        number = int(el.get("start", "1")) if (el.get("start") or "").isdigit() else 1
        lines: list[str] = []
        for child in el:
            if not isinstance(child.tag, str):
                continue
            item = "\n".join(self.capture(child)).split("\n")
            if not item[0].strip():
                continue
            marker = f"{number}. " if ordered else "- "
            number += 1
            lines.append(marker + item[0])
            lines.extend(" " * len(marker) + line if line.strip() else "" for line in item[1:])
        self.add_block("\n".join(lines), "list")

    def definitions(self, el: HtmlElement) -> None:
        self.flush()
        saved: list[tuple[int, str, str]] | None = None
        after_body = False
        for child in el:
            if child.tag == "dt":
                if after_body and saved is not None:
                    self.open_section(saved)
                    saved = None
                if saved is None and self.sectioned and _is_api_entry(child):
                    saved = list(self.path)
                    self.open_entry(child)
                self.add_block(_normal(" ".join(self.capture(child, mark_code=False))), "term")
                after_body = False
            elif child.tag == "dd":
                self.flush()
                self.children(child)
                self.flush()
                after_body = True
            elif isinstance(child.tag, str):
                self.node(child)
        if saved is not None:
            self.open_section(saved)

    def open_entry(self, dt: HtmlElement) -> None:
        """An API entry (Sphinx `dt id="functools.lru_cache"`) is a section named after the object."""
        named = dt.xpath(_ENTRY_NAME)
        name = _normal(named[0].text_content()) if named else ""
        if not name:
            name = _normal(dt.text_content()).split("(", 1)[0][:80].strip() or dt.get("id", "")
        level = max([_API_LEVEL - 1, *(lvl for lvl, _, _ in self.path)]) + 1
        self.open_section([*self.path, (level, name, dt.get("id", ""))])

    def table(self, el: HtmlElement) -> None:
        self.flush()
        lines: list[str] = []
        caption = el.find("caption")
        if caption is not None and (text := _normal(caption.text_content())):
            lines.append(text)
        joiner = " " if "memname" in _classes(el) else " | "  # Doxygen writes a signature as a table
        rows = [tr for tr in el.iter("tr") if next(tr.iterancestors("table"), None) is el]
        rows.sort(key=lambda tr: 0 if tr.getparent().tag == "thead" else 1)  # header rows first (stable)
        for tr in rows:
            cells = [_normal(" ".join(self.capture(cell))) for cell in tr if cell.tag in ("td", "th")]
            while cells and not cells[-1]:
                cells.pop()
            while cells and not cells[0]:
                cells.pop(0)  # an icon or corner cell
            if any(cells):
                lines.append(joiner.join(c for c in cells if c or joiner == " | "))
        self.add_block("\n".join(lines), "table")


def render_sections(root: HtmlElement, keep: BlockFilter | None = None) -> list[Section]:
    """The sections of the content element `root`, in document order; `keep` filters the blocks."""
    walker = _Walker(root, sectioned=True, keep=keep)
    walker.children(root)
    return walker.finish()
