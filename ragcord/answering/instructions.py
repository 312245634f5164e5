"""A knowledge base's answer instructions (its `answer_instructions`), as answerers read them.

The text is free for a language model: it receives all of it as the operator's instructions, after
ragcord's own rules, which it cannot lift (answers stay grounded in the passages and cited). The extractive
answerer cannot follow prose, so it honours two optional lines, anywhere in the text, case-insensitive:

    not found: <text>   what to reply when the knowledge base does not answer the question
    header: <text>      a line to start every found answer with (a greeting, a tone)

Example::

    Answer as the Acme support team; be friendly and brief.
    not found: I couldn't find that in the Acme docs. Ask in #support and a human will help.
    header: Here's what the Acme docs say:
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["AnswerInstructions", "parse_instructions"]

_LINE = re.compile(r"^\s*(not[ _-]?found|header)\s*:\s*(.*?)\s*$", re.IGNORECASE)
_MAX_LINE = 500


@dataclass(frozen=True)
class AnswerInstructions:
    text: str = ""  # the whole text, for a language model
    not_found: str = ""  # the extractive answerer's reply when nothing answers ("": its own)
    header: str = ""  # the line that starts the extractive answerer's found answers ("": none)

    def __bool__(self) -> bool:
        return bool(self.text.strip())


def parse_instructions(text: str) -> AnswerInstructions:
    not_found = header = ""
    for line in (text or "").splitlines():
        match = _LINE.match(line)
        if not match or not match.group(2):
            continue
        value = match.group(2)[:_MAX_LINE]
        if match.group(1).lower().startswith("not"):
            not_found = not_found or value
        else:
            header = header or value
    return AnswerInstructions(text=(text or "").strip(), not_found=not_found, header=header)
