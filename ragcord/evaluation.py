"""A team's golden set for its own documentation: questions, the pages that answer them, and the scores.

`ragcord eval` asks each question through the admin API and scores the citations: hit@1 (the right page is
cited first), hit@5 and the mean reciprocal rank. A question may carry a follow-up, asked in the same
conversation, which is scored the same way. Answers voted up in Discord make a starting set
(`ragcord eval --export-feedback`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urlsplit

import yaml

from ragcord.errors import InvalidArgument


@dataclass(frozen=True)
class Golden:
    """One question and the pages (URLs or paths, optionally with #section) that answer it."""

    question: str
    expected: tuple[str, ...]
    key_terms: tuple[str, ...] = ()
    follow_up: Golden | None = None


@dataclass(frozen=True)
class Reply:
    """What scoring needs of an answer: its text, cited URLs in order, and whether it was found."""

    text: str
    cited: tuple[str, ...]
    found: bool
    conversation_id: str = ""


@dataclass(frozen=True)
class Scored:
    golden: Golden
    reply: Reply
    rank: int | None  # 1-based position of the first right citation, None when none is right
    key_term: bool | None  # None when the golden question names no key term
    turn: int = 1  # 2 for a follow-up

    @property
    def reciprocal_rank(self) -> float:
        return 1.0 / self.rank if self.rank else 0.0


@dataclass
class Report:
    scored: list[Scored] = field(default_factory=list)

    def _of(self, turn: int | None) -> list[Scored]:
        return [s for s in self.scored if turn is None or s.turn == turn]

    def hit_at(self, k: int, turn: int | None = None) -> float:
        rows = self._of(turn)
        return sum(1 for s in rows if s.rank is not None and s.rank <= k) / len(rows) if rows else 0.0

    def mrr(self, turn: int | None = None) -> float:
        rows = self._of(turn)
        return sum(s.reciprocal_rank for s in rows) / len(rows) if rows else 0.0

    def key_terms(self, turn: int | None = None) -> float | None:
        rows = [s for s in self._of(turn) if s.key_term is not None]
        return sum(1 for s in rows if s.key_term) / len(rows) if rows else None

    def misses(self, k: int = 5) -> list[Scored]:
        return [s for s in self.scored if s.rank is None or s.rank > k]

    def count(self, turn: int | None = None) -> int:
        return len(self._of(turn))


def matches(expected: str, cited: str) -> bool:
    """Whether a cited URL is the expected page: a full URL or a path (a suffix of the cited path).

    The section counts only when the expected entry names one (`page.html#section`). The one citation rule:
    `ragcord eval` and the quality suite (bench/quality.py, its pages resolved against the site) use it.
    """
    want, want_fragment = urldefrag(expected)
    got, got_fragment = urldefrag(cited)
    if want_fragment and want_fragment != got_fragment:
        return False
    if "://" in want:
        return _normal(want) == _normal(got)
    path = _normal(urlsplit(got).path)
    want_path = _normal(want if want.startswith("/") else "/" + want)
    return path == want_path or path.endswith(want_path)


def _normal(url: str) -> str:
    """`/docs/` and `/docs/index.html` are one page; `A%20Step.html` is `A Step.html`."""
    url = unquote(url)
    if url.endswith("/index.html"):
        url = url.removesuffix("index.html")
    return url.rstrip("/") or "/"


def rank(expected: Sequence[str], cited: Sequence[str]) -> int | None:
    """1-based position of the first cited URL that matches any expected page, or None."""
    for position, url in enumerate(cited, start=1):
        if any(matches(want, url) for want in expected):
            return position
    return None


_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~])")
_MARKUP = re.compile(r"(?<!\\)(`+|\*\*)")  # inline code and bold marks: Discord shows `du`(1) as du(1)


def shown_text(text: str) -> str:
    """What a reader sees: marks and escapes (`lru\\_cache`) undone, whitespace collapsed, lowercased."""
    return " ".join(_ESCAPE.sub(r"\1", _MARKUP.sub("", text)).split()).lower()


def has_key_term(terms: Iterable[str], text: str) -> bool | None:
    """Whether the text, as a reader sees it, says one of the terms; None when there is none to look for."""
    wanted = [" ".join(t.split()).lower() for t in terms]
    if not wanted:
        return None
    shown = shown_text(text)
    return any(term in shown for term in wanted)


Ask = Callable[[str, str], Reply]  # (question, conversation_id) -> reply


def evaluate(golden: Iterable[Golden], ask: Ask, *, new_conversation: Callable[[], str]) -> Report:
    """Ask every question (and its follow-up in the same conversation) and score the citations."""
    report = Report()
    for item in golden:
        conversation = new_conversation()
        reply = ask(item.question, conversation)
        report.scored.append(_score(item, reply, 1))
        if item.follow_up is not None:
            second = ask(item.follow_up.question, reply.conversation_id or conversation)
            report.scored.append(_score(item.follow_up, second, 2))
    return report


def _score(item: Golden, reply: Reply, turn: int) -> Scored:
    return Scored(
        item, reply, rank(item.expected, reply.cited), has_key_term(item.key_terms, reply.text), turn
    )


def parse_golden(data: Any, *, source: str = "the golden set") -> list[Golden]:
    """Questions from YAML data: a list of {question, expected, key_terms?, follow_up?}."""
    if isinstance(data, dict) and "questions" in data:
        data = data["questions"]
    if not isinstance(data, list) or not data:
        raise InvalidArgument(
            f"{source} must be a non-empty list of questions (or a mapping with `questions`)"
        )
    return [_golden(entry, f"{source}, question {n}") for n, entry in enumerate(data, start=1)]


QUESTION_KEYS = ("question", "expected", "key_terms", "follow_up")
FOLLOW_UP_KEYS = QUESTION_KEYS[:-1]  # one follow-up is asked per question, so it has none of its own
QUOTED_QUESTION_CHARS = 40


def _golden(entry: Any, where: str, allowed: tuple[str, ...] = QUESTION_KEYS) -> Golden:
    if not isinstance(entry, dict):
        raise InvalidArgument(f"{where}: expected a mapping with `question` and `expected`")
    question = entry.get("question")
    where = _named(where, question)
    _check_keys(entry, where, allowed)
    if not isinstance(question, str) or not question.strip():
        raise InvalidArgument(f"{where}: `question` must be a non-empty string")
    expected = _strings(entry.get("expected"), f"{where}: `expected`")
    if not expected:
        raise InvalidArgument(f"{where}: `expected` must list at least one URL or path that answers it")
    follow_up = entry.get("follow_up")
    return Golden(
        question=question.strip(),
        expected=expected,
        key_terms=_strings(entry.get("key_terms", ()), f"{where}: `key_terms`"),
        follow_up=None if follow_up is None else _golden(follow_up, f"{where}, follow-up", FOLLOW_UP_KEYS),
    )


def _named(where: str, question: Any) -> str:
    """`question 37` is hard to find in a long file; its opening words are not."""
    if not isinstance(question, str) or not question.strip():
        return where
    text = " ".join(question.split())
    if len(text) > QUOTED_QUESTION_CHARS:
        cut = text[: QUOTED_QUESTION_CHARS - 3]
        text = (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "..."  # at a word's end
    return f'{where} ("{text}")'


def _check_keys(entry: dict[Any, Any], where: str, allowed: tuple[str, ...]) -> None:
    """A misspelt key (`expectd`) would otherwise be dropped and the question scored without it."""
    for key in entry:
        if key not in allowed:
            raise InvalidArgument(f"{where}: unknown key {str(key)!r} (allowed: {', '.join(allowed)})")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InvalidArgument(f"{where} must be a string or a list of strings")


def load_golden(path: Path) -> list[Golden]:
    """Questions from a YAML file; every problem with the file itself is an InvalidArgument of one line."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"cannot read {path}: not UTF-8 text (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise InvalidArgument(yaml_error(path, exc)) from exc
    return parse_golden(data, source=str(path))


def yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    """PyYAML's message spans several lines and quotes the file; where and what fit on one."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    if mark is None:
        return f"{path} is not valid YAML: {problem}"
    return f"{path} line {mark.line + 1}, column {mark.column + 1}: {problem}"


def golden_from_feedback(entries: Iterable[tuple[str, Sequence[str], int, int]]) -> list[dict[str, Any]]:
    """A starting golden set from answers voted up: (question, cited urls, up, down) -> YAML-ready rows.

    Only answers with more up than down votes count; the first time a question appears wins.
    """
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for question, cited, up, down in entries:
        key = " ".join(question.lower().split())
        if up <= down or not cited or key in seen:
            continue
        seen.add(key)
        rows.append({"question": question, "expected": list(dict.fromkeys(urldefrag(u).url for u in cited))})
    return rows
