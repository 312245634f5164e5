"""Small text tools for the extractive answerer: terms, sentences, coverage."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*[A-Za-z0-9_]|[A-Za-z0-9_]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[])|\n{2,}")
STOPWORDS = frozenset(
    """a an and are as at be but by can could did do does doing done for from get gets got had has have
    how i if in into is it its just me my no not of on or our out over so some than that the their them
    then there these they this those to too up us was we what when where which while who whom why will
    with would you your yours should shall may might must also about any all each every one use using used
    want need make made way please tell know""".split()
)


def stem(word: str) -> str:
    """A light English stemmer: enough to match 'retries' with 'retry' and 'activating' with 'activate'."""
    word = word.lower()
    for suffix, replacement in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + replacement
            break
    return word.rstrip("e") if len(word) > 4 else word


def terms(text: str) -> list[str]:
    """Content terms, stemmed, in order (stop words dropped)."""
    return [stem(t) for t in _TOKEN.findall(text) if t.lower() not in STOPWORDS]


def coverage(question: str, passage: str) -> float:
    """Share of the question's distinct content terms that occur in the passage."""
    wanted = set(terms(question))
    if not wanted:
        return 0.0
    return len(wanted & set(terms(passage))) / len(wanted)


def sentences(passage: str) -> list[str]:
    """Sentences and other units (list items, code blocks) of a passage, in order, original wording."""
    units: list[str] = []
    in_code: list[str] | None = None
    for block in re.split(r"\n{2,}", passage):
        for line in block.split("\n"):
            stripped = line.strip()
            if in_code is not None:
                in_code.append(line)
                if stripped.startswith("```"):
                    units.append("\n".join(in_code))
                    in_code = None
                continue
            if stripped.startswith("```"):
                in_code = [line]
                continue
            if not stripped:
                continue
            if stripped.startswith(("- ", "* ", "|")) or re.match(r"^\d+\. ", stripped):
                units.append(stripped)
                continue
            units.extend(s.strip() for s in _SENTENCE.split(stripped) if s.strip())
    if in_code:
        units.append("\n".join(in_code))
    return units
