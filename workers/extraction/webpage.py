"""Pages no documentation generator made: trafilatura decides which blocks are content, our renderer keeps
their structure (sections, anchors, code, lists, tables).

A documentation generator's page is read by `content.main_content` alone (its containers are known and its
structure matters); any other page (a product site, a blog, a news article, a help centre) is the open web,
where navigation, related-article lists, bylines, cookie boxes and footers surround the text. There
trafilatura, the best main-content extractor measured on the open web (bench/extraction.py), reads the page
and each block our renderer produces is kept only when trafilatura kept its text.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import trafilatura
from lxml.html import HtmlElement

log = logging.getLogger(__name__)

# <meta name="generator"> values of documentation generators (lower case, matched as substrings).
_DOC_GENERATORS = (
    "sphinx",
    "docutils",
    "docbook",
    "doxygen",
    "makeinfo",
    "texinfo",
    "texi2html",
    "gtk-doc",
    "mkdocs",
    "docusaurus",
    "mdbook",
    "javadoc",
    "rustdoc",
    "pdoc",
    "typedoc",
    "jsdoc",
    "antora",
    "vitepress",
    "vuepress",
    "asciidoctor",
    "gitbook",
    "docfx",
    "starlight",
    "nextra",
    "godoc",
    "pkgsite",
)
# Containers and marks only documentation generators write (Sphinx, Doxygen, DocBook/gtk-doc, texinfo,
# Read the Docs, MkDocs Material, Docusaurus, rustdoc, Javadoc, Go's site).
_DOC_MARKS = (
    "//div[contains(concat(' ', normalize-space(@class), ' '), ' sphinxsidebar ')]"
    " | //div[contains(concat(' ', normalize-space(@class), ' '), ' documentwrapper ')]"
    " | //div[contains(concat(' ', normalize-space(@class), ' '), ' rst-content ')]"
    " | //a[contains(concat(' ', normalize-space(@class), ' '), ' headerlink ')]"
    " | //div[@id='doc-content'] | //div[contains(concat(' ', normalize-space(@class), ' '), ' navheader ')]"
    " | //div[contains(concat(' ', normalize-space(@class), ' '), ' titlepage ')]"
    " | //table[contains(concat(' ', normalize-space(@class), ' '), ' navigation ')]"
    " | //div[contains(concat(' ', normalize-space(@class), ' '), ' md-content ')]"
    " | //div[contains(concat(' ', normalize-space(@class), ' '), ' theme-doc-markdown ')]"
    " | //div[contains(concat(' ', normalize-space(@class), ' '), ' nav-panel ')]"
    " | //div[@id='nav-path'] | //section[@id='main-content' and contains(@class, 'content')]"
    " | //div[contains(concat(' ', normalize-space(@class), ' '), ' contentContainer ')]"
)
# Go's documentation pages declare themselves in a leading comment: <!--{ "Title": ... }-->
_GODOC_HEADER = re.compile(rb'^\s*<!--\{\s*"Title"')

# A block of this many words or more is kept when this share of its word trigrams is in trafilatura's text
# (our rendering and trafilatura's differ in list markers, cell separators and line breaks).
_LONG_BLOCK_WORDS = 4
_TRIGRAM_SHARE = 0.5
# A block of few words but this many characters is in a script without spaces between words.
_LONG_BLOCK_CHARS = 25
_PIECE_CHARS = 8
# Never text: code, templates, form controls, the pronunciation over ruby text (trafilatura drops it too).
_UNREADABLE = ("script", "style", "noscript", "template", "svg", "button", "select", "textarea", "rt", "rp")
_MARKER = re.compile(r"^\s*(?:[-*]|\d+\.)\s+")


def is_documentation(tree: HtmlElement, body: bytes) -> bool:
    """Whether a documentation generator made the page (its meta generator tag, or its own containers)."""
    for meta in tree.iterfind(".//meta[@name]"):
        if meta.get("name", "").lower() == "generator":
            content = (meta.get("content") or "").lower()
            if any(name in content for name in _DOC_GENERATORS):
                return True
    if _GODOC_HEADER.match(body[:256]):
        return True
    return bool(tree.xpath(_DOC_MARKS))


def strip_unreadable(tree: HtmlElement) -> HtmlElement:
    """The page's body without what is never read as text (scripts, styles, ruby annotations); in place."""
    root = tree.find("body")
    if root is None:
        root = tree
    for el in list(root.iter(*_UNREADABLE)):
        if el.getparent() is not None:
            el.drop_tree()
    return root


def _words(text: str) -> list[str]:
    return text.replace("`", " ").replace("|", " ").split()


@dataclass(frozen=True)
class ContentText:
    """trafilatura's text of a page, indexed to answer "did it keep this block?"."""

    joined: str  # whitespace-normalised, words separated by single spaces, padded with spaces
    trigrams: frozenset[tuple[str, str, str]]
    lines: frozenset[str]  # each line of trafilatura's text, its words joined by single spaces
    compact: str  # the text without any whitespace, for scripts that do not separate words

    @property
    def words(self) -> int:
        return self.joined.count(" ") - 1

    @classmethod
    def of(cls, text: str) -> ContentText:
        words = _words(text)
        trigrams = frozenset(zip(words, words[1:], words[2:], strict=False))
        raw = text.split("\n")  # a line "5. Name" is an item of a list or a numbered heading
        lines = frozenset(" ".join(_words(line)) for line in raw)
        lines |= {" ".join(_words(_MARKER.sub("", line))) for line in raw}
        return cls(f" {' '.join(words)} ", trigrams, lines, "".join(words))

    def holds(self, text: str) -> bool:
        words = _words(text)
        if not words:
            return False
        if len(words) < _LONG_BLOCK_WORDS and sum(map(len, words)) >= _LONG_BLOCK_CHARS:
            # Chinese, Japanese, Thai: few spaces, so pieces of characters stand for trigrams
            compact = "".join(words)
            pieces = [compact[i : i + _PIECE_CHARS] for i in range(0, len(compact), _PIECE_CHARS)]
            return sum(1 for piece in pieces if piece in self.compact) >= _TRIGRAM_SHARE * len(pieces)
        if len(words) < _LONG_BLOCK_WORDS:
            # a short block (a label, a heading, a link) only as a line of its own: "Kontakt" is a common word
            return " ".join(words) in self.lines
        if f" {' '.join(words)} " in self.joined:
            return True
        grams = list(zip(words, words[1:], words[2:], strict=False))
        found = sum(1 for gram in grams if gram in self.trigrams)
        return found >= _TRIGRAM_SHARE * len(grams)

    def keep(self, kind: str, text: str) -> str | None:
        """A block filter for `render_sections`: the block, the lines of it trafilatura kept, or None."""
        if kind in ("list", "table"):
            lines = text.split("\n")
            kept = [line for line in lines if self.holds(_MARKER.sub("", line))]
            if not kept:
                return None
            return text if len(kept) == len(lines) else "\n".join(kept)
        return text if self.holds(text) else None


def content_text(tree: HtmlElement, url: str) -> ContentText | None:
    """trafilatura's main text of the page (it reads a copy of `tree`), or None when it finds none."""
    try:
        # trafilatura's standard options (its own evaluation's), text only: our renderer keeps the structure
        text = trafilatura.extract(
            tree,
            url=url,
            include_comments=False,
            include_tables=True,
            include_formatting=False,
            with_metadata=False,
            output_format="txt",
        )
    except (ValueError, TypeError, RecursionError) as exc:
        log.debug("trafilatura failed on %s: %s", url, exc)
        return None
    if not text or not text.strip():
        return None
    return ContentText.of(text)
