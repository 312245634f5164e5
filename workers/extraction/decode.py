"""Bytes to an lxml tree as a browser reads them: BOM, HTTP charset, <meta>, XML declaration, detection."""

from __future__ import annotations

import codecs
import logging
import re

import charset_normalizer
import lxml.html
from lxml import etree

from ragcord.errors import ExtractionFailed

log = logging.getLogger(__name__)

# The HTML standard's prescan reads the first 1024 bytes; real pages put <meta> after long comments.
_PRESCAN_BYTES = 4096
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_XML_DECLARATION = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9_.:-]+)["']""")
# Browsers read these labels as their supersets (WHATWG Encoding standard).
_ALIASES = {
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "ascii": "cp1252",
    "us-ascii": "cp1252",
    "x-user-defined": "cp1252",
}


def _known(label: str | bytes | None) -> str | None:
    """The Python codec for a charset label, or None when the label names no encoding we can use."""
    if not label:
        return None
    name = (label.decode("ascii", "ignore") if isinstance(label, bytes) else label).strip().lower()
    name = _ALIASES.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def sniff_encoding(body: bytes, http_charset: str | None = None) -> str:
    """The encoding of `body`: BOM, then the HTTP charset, <meta>, the XML declaration, then detection."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return encoding
    if found := _known(http_charset):
        return found
    head = body[:_PRESCAN_BYTES]
    if (match := _META_CHARSET.search(head)) and (found := _known(match.group(1))):
        # A page cannot declare a UTF-16 <meta> in ASCII-compatible bytes; browsers read it as UTF-8.
        return "utf-8" if found.startswith("utf-16") else found
    if (match := _XML_DECLARATION.match(head)) and (found := _known(match.group(1))):
        return found
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(body[:65536]).best()
    return _known(best.encoding if best else None) or "cp1252"


def parse_html(body: bytes, encoding: str) -> lxml.html.HtmlElement:
    """The document tree of `body` read as `encoding`; raises ExtractionFailed when nothing can be parsed."""
    if not body.strip():
        raise ExtractionFailed("empty page: the response has no content")
    # Decoded here: Python knows more labels than libxml2's iconv, and libxml2 may stop reading at the
    # first invalid UTF-8 byte; it then only ever reads valid UTF-8.
    body = body.decode(encoding, errors="replace").removeprefix("\ufeff").encode("utf-8")
    # huge_tree: libxml2 otherwise stops reading at 256 levels of nesting and drops the rest of the page
    parser = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True, huge_tree=True)
    try:
        tree = lxml.html.document_fromstring(body, parser=parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError, LookupError) as exc:
        raise ExtractionFailed(f"unparseable HTML ({encoding}): {exc}") from None
    if tree is None or not len(tree):
        raise ExtractionFailed(f"unparseable HTML ({encoding}): no document element")
    return tree
