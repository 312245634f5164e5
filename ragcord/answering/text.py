"""Text tools for the extractive answerer: terms, coverage, passages as quotable units."""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass

import Stemmer  # type: ignore[import-not-found]  # PyStemmer ships no type hints

from ragcord.knowledge.chunking import SENTENCE_END, blocks

_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*[A-Za-z0-9_]|[A-Za-z0-9_]")
_HOW_TO = re.compile(
    r"\b(how\s+(do|can|would|should|to)|what'?s\s+the\s+(command|way)|is\s+there\s+a\s+way)\b", re.I
)
STOPWORDS = frozenset(
    """a an and are as at be but by can could did do does doing done for from get gets got had has have
    how i if in into is it its just me my no not of on or our out over so some than that the their them
    then there these they this those to too up us was we what when where which while who whom why will
    with would you your yours should shall may might must also about any all each every one use using used
    want need make made way please tell know""".split()
)


_STEMMER = Stemmer.Stemmer("english")


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Snowball's English stemmer (PyStemmer): 'retries' and 'retry' meet, 'class' stays 'class'."""
    return str(_STEMMER.stemWord(word.lower()))


def tokens(text: str) -> list[str]:
    """The words `terms` reads (names like `os.path` and `--force` whole), in order, as written."""
    return _TOKEN.findall(text)


def terms(text: str) -> list[str]:
    """Content terms, stemmed, in order (stop words dropped)."""
    return [stem(t) for t in tokens(text) if t.lower() not in STOPWORDS]


def asks_how_to(question: str) -> bool:
    """Anywhere in the question: "perl keeps warning about the locale, how do i fix it" asks for a command."""
    return _HOW_TO.search(question) is not None


def coverage(question: str, passage: str) -> float:
    """Share of the question's distinct content terms that occur in the passage."""
    wanted = set(terms(question))
    if not wanted:
        return 0.0
    return len(wanted & set(terms(passage))) / len(wanted)


# --- passages as quotable units -------------------------------------------------------------------------

_ENDS_SENTENCE = re.compile(r"[.!?][\"')\]’”»*`]*$")
# Lead-ins ending in a full stop (DocBook, man pages): "The following sets the time.", "... by the following."
_FORWARD = re.compile(
    r"^(the following|here is|here's)\b|\b(the following|as follows|like this|like so|shown below|below)\W*$",
    re.I,
)
# A command-line option's or a synopsis' own line (Sphinx's option entries): it names what follows.
_OPTION = re.compile(r"^--?[A-Za-z0-9][\w.=-]*(?:[ ,]+(?:--?[\w.=-]+|[<\[][^ ]*[>\]]))*$")
_CODE_LINE = re.compile(r"^`[^`]+`$")
_LIST_ITEM = re.compile(r"^(?:[-*+•]|\d+[.)])\s")
# A line of an API reference: `@functools.cache(user_function)`, `gchar * g_strdup (const gchar *str);`.
_SIGNATURE = re.compile(r"^@?[A-Za-z_][\w.:*\s]*\(.*\)\s*;?$")


@dataclass(frozen=True)
class Unit:
    """One quotable piece of a passage: a whole sentence, list item, table, code block or API signature.

    `block` numbers the passage's paragraphs, so a quote knows which units read on from each other.
    """

    kind: str  # sentence | continuation | item | table | code | signature | label
    text: str
    block: int
    forward: bool = False  # a sentence that points at the code, list or table right after it

    @property
    def complete(self) -> bool:
        """Whether the unit can end a quote: not a lead-in (`... like this:`) nor a cut-off sentence."""
        if self.kind in ("item", "table", "code", "signature"):
            return True
        return self.prose and not self.forward and bool(_ENDS_SENTENCE.search(self.text))

    @property
    def prose(self) -> bool:
        return self.kind in ("sentence", "continuation")

    @property
    def leads_in(self) -> bool:
        """`... like this:`, or `The following sets the time.` right before its code: not said without it."""
        return self.prose and (self.forward or self.text.rstrip().endswith(":"))


def _is_prose_start(text: str) -> bool:
    first = text.lstrip()[:1]
    return not first or not first.islower()


def _paragraphs(passage: str) -> list[str]:
    """The passage's blocks, with a sentence cut by a chunk boundary rejoined."""
    joined: list[str] = []
    for block in blocks(passage, close_open_fence=True):
        previous = joined[-1] if joined else ""
        if (
            previous
            and not previous.startswith("```")
            and not block.startswith("```")
            and not _ENDS_SENTENCE.search(previous.rstrip())
            and not previous.rstrip().endswith(":")
            and not _is_prose_start(block)
        ):
            joined[-1] = f"{previous} {block.strip()}"  # one paragraph the chunker cut in two
        else:
            joined.append(block)
    return joined


def _prose_units(text: str, block: int, *, final: bool = False) -> list[Unit]:
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if all("|" in line for line in lines) and (len(lines) > 1 or lines[0].startswith("|")):
        return [Unit("table", "\n".join(lines), block)]
    if any(_LIST_ITEM.match(line) for line in lines):
        units: list[Unit] = []
        for line in lines:
            if _LIST_ITEM.match(line) or not units:
                units.append(Unit("item" if _LIST_ITEM.match(line) else "sentence", line, block))
            else:  # a list item's continuation line
                units[-1] = Unit(units[-1].kind, f"{units[-1].text} {line}", block)
        return units
    flat = " ".join(lines)
    if len(lines) == 1 and _SIGNATURE.match(flat) and "`" not in flat:
        return [Unit("signature", flat, block)]
    if len(lines) == 1 and len(flat.split()) <= 8 and (_OPTION.match(flat) or _CODE_LINE.match(flat)):
        return [Unit("signature", flat.strip("`"), block)]  # `--fresh`, `cmake [<options>] -S <path>`
    if not _ENDS_SENTENCE.search(flat) and not flat.endswith(":") and len(flat.split()) <= 6:
        return [Unit("label", flat, block)]  # "Warning", "PERMISSIONS", "Externally Visible Server"
    out = [Unit("sentence", s.strip(), block) for s in SENTENCE_END.split(flat) if s.strip()]
    last = out[-1] if out else None
    if (
        last is not None
        and not final  # at the passage's end it may be a sentence the chunk boundary cut
        and not last.complete
        and not last.leads_in
        and len(last.text.split()) >= 6
        and last.text[-1:].isalnum()
        and _is_prose_start(last.text)
    ):  # a whole paragraph the page wrote without its full stop
        out[-1] = Unit("sentence", last.text + ".", block)
    return out


def passage_units(passage: str) -> list[Unit]:
    """The passage's quotable units in page order; a sentence a chunk boundary cut at its start is dropped."""
    units: list[Unit] = []
    paragraphs = _paragraphs(passage)
    for block, text in enumerate(paragraphs):
        if text.lstrip().startswith("```"):
            units.append(Unit("code", text.strip("\n"), block))
            continue
        found = _prose_units(text, block, final=block == len(paragraphs) - 1)
        if found and found[0].kind == "sentence" and not _is_prose_start(found[0].text):
            if block == 0:
                found = found[1:]  # the chunk starts mid-sentence
            else:  # a sentence that goes on after a code block: it cannot open a quote
                found[0] = Unit("continuation", found[0].text, block)
        units.extend(found)
    if units and units[-1].kind == "sentence" and not units[-1].complete and not units[-1].leads_in:
        units.pop()  # the passage ends mid-sentence
    return [
        dataclasses.replace(unit, forward=True)
        if unit.prose
        and nxt.kind in ("code", "item", "table")
        and nxt.block != unit.block
        and _FORWARD.search(unit.text)
        else unit
        for unit, nxt in zip(units, [*units[1:], *units[-1:]], strict=True)
    ]
