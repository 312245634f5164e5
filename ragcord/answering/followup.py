"""Follow-up questions: turning "and how do I activate it?" into a query search can answer on its own.

A heuristic, no model: a question that starts like a follow-up ("and", "what about", ...), one that points
back ("it", "those", ...) or a short one that names almost nothing ("show me an example", "on Windows?") is
prefixed with the conversation's last user questions. A short question that names its own subject ("write a
class with a constructor") is a new topic in the same thread, and is searched alone.
"""

from __future__ import annotations

import re

from ragcord.answering.text import terms
from ragcord.memory import Conversation

__all__ = ["is_follow_up", "own_terms", "standalone_query"]

_SHORT_QUESTION_WORDS = 8
_OWN_SUBJECT_TERMS = 3  # content words a short question needs to stand alone
_FOLLOW_UP_START = re.compile(r"(?:and|also|what about|how about|then|so)\b", re.IGNORECASE)
_ANAPHORA = re.compile(r"\b(?:it|its|this|that|they|them|those|these|there|one)\b", re.IGNORECASE)
# "that" opening a clause ("check that a file exists", "make sure that it runs") points at nothing before.
_CLAUSE_THAT = re.compile(
    r"\bthat(?=\s+(?:a|an|the|my|your|our|their|his|her|i|you|we|he|she|no|all|every|some|each|any)\b)",
    re.IGNORECASE,
)


def is_follow_up(question: str) -> bool:
    """Whether `question` leans on what was asked before it in the conversation (see the module)."""
    stripped = question.strip()
    return (
        (len(stripped.split()) < _SHORT_QUESTION_WORDS and len(set(terms(stripped))) < _OWN_SUBJECT_TERMS)
        or bool(_FOLLOW_UP_START.match(stripped))
        or bool(_ANAPHORA.search(_CLAUSE_THAT.sub(" ", stripped)))
    )


def own_terms(conversation_questions: list[str], question: str) -> set[str]:
    """The follow-up's content terms that the earlier questions did not use: what it adds to the topic."""
    before = {t for q in conversation_questions for t in terms(q)}
    return set(terms(question)) - before


def standalone_query(conversation: Conversation, question: str, *, max_words: int = 60) -> str:
    """A follow-up prefixed with the last user question(s), so search sees what "it" is (no model)."""
    words = question.split()
    if not words or not is_follow_up(question):
        return question
    previous = [turn.text for turn in conversation.turns if turn.role == "user"][-2:]
    room = max_words - len(words)  # the question itself is never cut; older context words go first
    if not previous or room <= 0:
        return question
    context = " ".join(previous).split()[-room:]
    return " ".join([*context, *words])
