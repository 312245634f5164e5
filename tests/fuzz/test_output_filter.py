"""The model-output filter and the log redaction, on any text split into any stream of deltas."""

from __future__ import annotations

import logging
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from ragcord.answering.llm import OutputFilter
from ragcord.answering.prompt import instruction_fragments
from ragcord.logs import REDACTED, RedactingFilter, redact, remember_secrets

SECRET = "sk-fuzz-Qm4Ww8Ee2Rr6"
remember_secrets([SECRET])


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


@settings(max_examples=300, deadline=None)
@given(
    before=st.text(max_size=60),
    after=st.text(max_size=60),
    leak=st.sampled_from([SECRET, *instruction_fragments()]),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_a_secret_or_an_instruction_never_shows_however_the_stream_splits_it(before, after, leak, cuts):
    text = f"{before}{leak}{after}"
    output = OutputFilter()
    shown = [output.feed(delta) for delta in split(text, cuts)]
    shown.append(output.flush())
    # At every moment, what the user could have seen so far holds no part worth having.
    for end in range(1, len(shown) + 1):
        assert leak not in "".join(shown[:end])
    assert REDACTED in "".join(shown)


@given(st.text(max_size=200))
def test_text_without_secrets_passes_through_whole(text):
    if SECRET in text or any(f in text for f in instruction_fragments()):
        return
    output = OutputFilter()
    shown = "".join(output.feed(c) for c in text) + output.flush()
    assert shown == text


def test_log_records_lose_the_secret_in_message_arguments_and_tracebacks():
    record_filter = RedactingFilter()
    try:
        raise RuntimeError(f"request failed with Authorization: Bearer {SECRET}")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "call with %s", (SECRET,), sys.exc_info())
    assert record_filter.filter(record)
    formatted = logging.Formatter().format(record)
    assert SECRET not in formatted and formatted.count(REDACTED) >= 2
    assert redact(f"a{SECRET}b") == f"a{REDACTED}b"


def test_json_log_lines_lose_the_secret_too(capsys):
    from ragcord.logs import configure_logging
    from ragcord.settings import Settings

    root = logging.getLogger()
    saved, hook = (root.handlers[:], root.level), sys.excepthook
    try:
        configure_logging(Settings(_env_file=None, log_json=True, openai_api_key=SECRET))
        try:
            raise ValueError(f"token {SECRET} refused")
        except ValueError:
            logging.getLogger("ragcord.test").exception("failed with %s", SECRET)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        sys.excepthook = hook
    err = capsys.readouterr().err
    assert '"message": "failed with [redacted]"' in err and SECRET not in err and "ValueError" in err
