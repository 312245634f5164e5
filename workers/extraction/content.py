"""Which part of a page is content: boilerplate dropped, then the generator's main container or a guess."""

from __future__ import annotations

import logging

from lxml.html import HtmlElement

log = logging.getLogger(__name__)

# Never content, wherever they are.
_DROP_TAGS = frozenset(
    "script style noscript template nav aside form button input select textarea svg canvas iframe "
    "object embed link meta".split()
)
_DROP_ROLES = frozenset(("navigation", "banner", "contentinfo", "search", "complementary"))
# Class tokens of navigation, permalinks, sidebars and footers in Sphinx, DocBook, gtk-doc, texinfo,
# Doxygen, MkDocs, Read the Docs and common site themes. Tokens, not substrings: `.sidebar` is content.
_DROP_CLASSES = frozenset(
    (
        "headerlink header-anchor anchorjs-link permalink "  # permalinks
        "sphinxsidebar sphinxsidebarwrapper related rst-footer-buttons wy-nav-side wy-breadcrumbs "  # Sphinx
        "breadcrumb breadcrumbs navigation navheader navfooter nav-panel navpath footer "  # DocBook, texinfo
        "toc Contents_element ingroups dynheader dyncontent "  # tables of contents, Doxygen groups and graphs
        "skip-link skiplink sr-only visually-hidden linenos lineno listing_lines mini-toc section-toc menu "
        "cookie-banner cookie-consent"
    ).split()
)
_DROP_IDS = frozenset(("nav", "TOC", "toc", "sidebar", "searchbox", "nav-path", "side-nav", "cookie-banner"))
# A page that is nothing but its table of contents (gtk-doc's and DocBook's chapter pages: each entry a link
# and a one-line description) is read again keeping these, so its descriptions are indexed.
_TOC_CLASSES = frozenset(("toc", "mini-toc", "section-toc"))
_TOC_IDS = frozenset(("toc", "TOC"))
_PERMALINK_GLYPHS = frozenset(("¶", "§", "#", "🔗", "¶¶"))
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# The main container of known generators, best first (XPath 1.0: class tokens need the concat trick).
_MAIN_CANDIDATES = (
    "//*[@role='main']",
    "//main",
    "//div[contains(concat(' ', normalize-space(@class), ' '), ' body ')]",  # Sphinx themes
    "//div[@id='doc-content']",  # Doxygen: title header + contents
    "//div[contains(concat(' ', normalize-space(@class), ' '), ' contents ')]",  # Doxygen
    "//article",
    "//*[@id='main-content' or @id='content' or @id='main']",
    "//div[contains(concat(' ', normalize-space(@class), ' '), ' document ')]",  # Sphinx
    # DocBook and gtk-doc: the book part that is the page, beside .navheader/.navfooter
    "/html/body/div[contains(' chapter refentry section article book part appendix preface glossary"
    " reference sect1 ', concat(' ', normalize-space(@class), ' '))]",
)
_BLOCK_TEXT_TAGS = ("p", "pre", "li", "dd", "td", "blockquote")


def _classes(el: HtmlElement) -> set[str]:
    return set((el.get("class") or "").split())


def _is_boilerplate(el: HtmlElement, *, keep_toc: bool = False) -> bool:
    tag = el.tag
    if keep_toc and (_classes(el) & _TOC_CLASSES or el.get("id") in _TOC_IDS):
        return False
    if tag in _DROP_TAGS:
        return True
    if el.get("role") in _DROP_ROLES or el.get("id") in _DROP_IDS or el.get("aria-hidden") == "true":
        return True
    raw_classes = el.get("class") or ""
    classes = set(raw_classes.split())
    if classes & _DROP_CLASSES or "cookie" in raw_classes.lower():
        return True
    if tag in ("header", "footer"):
        # an <article>'s own <header> holds its title; a page header or footer is chrome
        return tag == "footer" or next(el.iter(*_HEADINGS), None) is None
    if tag == "div" and "header" in classes:
        return next(el.iter("h1", "h2"), None) is None and not el.xpath(
            ".//*[contains(concat(' ', normalize-space(@class), ' '), ' headertitle ')]"
        )
    if tag in ("div", "section") and classes >= {"contents", "topic"}:
        return True  # Sphinx's local table of contents
    parent = el.getparent()
    if tag == "div" and "summary" in classes and parent is not None and "header" in _classes(parent):
        return True  # Doxygen's "Data Structures | Macros | Functions" links
    if tag == "p" and len(el) == 1 and not (el.text or "").strip() and not (el[0].tail or "").strip():
        # Doxygen's "Go to the source code of this file." (the source listing is a page of its own)
        return el[0].tag == "a" and (el[0].get("href") or "").endswith("_source.html")
    return tag == "a" and _is_permalink(el)


def _is_permalink(a: HtmlElement) -> bool:
    href = a.get("href") or ""
    return href.startswith("#") and " ".join(a.text_content().split()) in _PERMALINK_GLYPHS


def drop_boilerplate(root: HtmlElement, *, keep_toc: bool = False) -> None:
    """Remove navigation, chrome and permalinks from `root` in place (their tail text stays)."""
    doomed = [el for el in root.iter() if isinstance(el.tag, str) and _is_boilerplate(el, keep_toc=keep_toc)]
    for el in doomed:
        if el.getparent() is not None:
            el.drop_tree()


def _text_length(el: HtmlElement) -> int:
    return len("".join(el.itertext()).split())


def _prose_length(block: HtmlElement) -> int:
    """Words of `block` outside links: a list of links is navigation, however long."""
    return _text_length(block) - sum(_text_length(a) for a in block.iter("a"))


def _densest(body: HtmlElement) -> HtmlElement:
    """The deepest element holding most of the page's prose: the generic content guess."""
    weight: dict[HtmlElement, int] = {}
    total = 0
    for block in body.iter(*_BLOCK_TEXT_TAGS):
        if block.getparent() is not None and block.getparent().tag in _BLOCK_TEXT_TAGS:
            continue
        size = _prose_length(block)
        total += size
        for ancestor in block.iterancestors():
            weight[ancestor] = weight.get(ancestor, 0) + size
    if not total:
        return body
    best, best_depth = body, 0
    for el, size in weight.items():
        if size >= 0.8 * total:
            depth = sum(1 for _ in el.iterancestors())
            if depth > best_depth:
                best, best_depth = el, depth
    h1 = body.find(".//h1")
    while h1 is not None and best is not body and h1 not in best.iterdescendants("h1"):
        best = best.getparent()  # the page's own title belongs to its content
    return best


def main_content(tree: HtmlElement, *, keep_toc: bool = False) -> HtmlElement:
    """The element whose text is the page's content, with boilerplate already dropped from it."""
    body = tree.find("body")
    if body is None:
        body = tree
    drop_boilerplate(body, keep_toc=keep_toc)
    total = _text_length(body)
    for xpath in _MAIN_CANDIDATES:
        matches = body.xpath(xpath)
        if not matches:
            continue
        best = max(matches, key=_text_length)
        if total and _text_length(best) >= 0.25 * total:
            log.debug("main content by %s", xpath)
            return best
    return _densest(body)
