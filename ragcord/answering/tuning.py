"""Every number the extractive answering path was tuned with, named, in one object passed down.

Where each came from is in docs/quality-log.md ("Named settings"); the leave-one-site-out runs of
`python -m bench.quality --loso` re-choose the main ones on all sites but one and measure that one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["AnswerTuning", "DEFAULT_TUNING"]


@dataclass(frozen=True)
class AnswerTuning:
    """Numbers of the extractive answerer (not-found bars, quote choice, "See also")."""

    # Not found: the best passage's cosine to the query (MiniLM, calibrated on the first five sites).
    min_similarity: float = 0.35
    # Not found without vectors: share of the question's distinct terms found in the best passage.
    min_term_coverage: float = 0.6
    # Found anyway when the best passage has this share of the question's terms, whatever its cosine.
    sure_term_coverage: float = 0.75
    # A follow-up's own new words must be in the thread's passages at least this share, else its meaning
    # read alone must reach min_similarity. 0 turns the rule off: on the five tuned sites 0.5 refused no
    # follow-up about a missing page and one answerable follow-up; 0.75 won on one site and lost on another
    # when each was left out (docs/quality-log.md, session 7). Off until a better signal of "new subject".
    follow_up_own_coverage: float = 0.0
    # A table of contents (a run of at least this many entries of at most this many words: list items that
    # are no sentence, or "Title — what it is" lines) names pages without holding them: a question's word
    # found only there is not found. 3 and 12: the shortest lists of titles in the suite's indexes are
    # 3-4 entries, and Sphinx's longest entry ("`sphinx.ext.napoleon` – Support for NumPy and ...") is 10.
    contents_items: int = 3
    contents_item_words: int = 12
    max_words: int = 130  # a quote's length, in words, before whole units stop being added
    max_passages: int = 3  # quotes of different sections
    max_citations: int = 5
    considered: int = 5  # the best passages quotes are chosen from; later ones are only linked
    max_code_lines: int = 30  # a longer code block is not appended to a quote
    min_quote_words: int = 4  # fewer, with no code or table: not worth quoting
    # A code block of at most this many lines is a quote on its own, under its page and section (a synopsis,
    # an example with no sentence before it in the passage). 0: a code block alone is never quoted.
    # A code block of at most `follow_code_lines` right after the quoted paragraph joins it whatever the
    # question (one that asks how to do something takes any up to max_code_lines). 0: only for a how-to.
    # Both chosen leaving each tuned site out by `python -m bench.quote_loss --loso` (0/10/30 and 0/5/10;
    # docs/quality-log.md, session 10, h-quote): left out usable 0.55 -> 0.56, key term 0.64 = 0.64.
    lone_code_lines: int = 30
    follow_code_lines: int = 10
    code_bonus: float = 1.6  # a unit with code in it more often holds the command or function asked for
    rank_decay: float = 0.25  # the retriever's order counts: the 2nd passage weighs 1/1.25, the 3rd 1/1.5
    second_quote: float = 0.3  # another section is quoted only when it scores this share of the best
    same_section: float = 0.1  # more of a section already quoted needs less: it reads on from the same place
    total_words: float = 1.6  # all quotes together: at most this many times max_words
    windows: int = 10  # the best units whose quotes are compared
    window_length: float = 0.15  # how much a longer quote is discounted
    top_page: float = 0.3  # the search's best page opens the answer when its best quote scores this share
    semantic_power: float = 1.0  # how much a quote's meaning, against the best quote's, weighs on its score
    semantic_words: int = 24  # what of a quote the embedder reads: its section and first words
    # The section that opens the answer, chosen by a weight for each of `extractive.OPENING_FEATURES`,
    # learned on the five tuned sites by `python -m bench.opening` (docs/quality-log.md, session 9: usable
    # of each tuned site asked with weights learned on the other four 0.51 -> 0.55, no figure lower).
    # Empty: the search's best page opens it when its quote scores `top_page` of the best (the hand rule).
    opening_weights: tuple[float, ...] = (
        0.34,  # score
        0.33,  # meaning
        -0.39,  # rank
        0.51,  # top_page
        0.24,  # code_block
        0.13,  # how_to_code
        0.08,  # inline_code
        0.14,  # heading
        0.01,  # phrase
        -0.02,  # covered
        0.43,  # search
        0.64,  # cosine
        -0.11,  # keyword
        -0.09,  # entry
        0.16,  # length
    )
    see_also: float = 0.25  # an unquoted page is linked when its search score is this share of the best

    def with_values(self, **values: Any) -> AnswerTuning:
        """A copy with some values changed; an unknown name is an error that lists the known ones."""
        known = {f.name for f in fields(self)}
        if unknown := set(values) - known:
            raise ValueError(f"unknown answer settings {sorted(unknown)}; known: {sorted(known)}")
        return replace(self, **values)


DEFAULT_TUNING = AnswerTuning()
