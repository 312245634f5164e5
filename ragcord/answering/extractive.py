"""The extractive answerer: no model. It quotes the passage that best answers the question, whole (sentences,
list items, code blocks, in the page's order), introduced by its page and section and cited, and says plainly
when the knowledge base does not have the answer."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ragcord.answering.followup import is_follow_up, own_terms
from ragcord.answering.instructions import parse_instructions
from ragcord.answering.text import Unit, asks_how_to, coverage, passage_units, terms
from ragcord.answering.tuning import DEFAULT_TUNING, AnswerTuning
from ragcord.answering.types import Answer, Citation, cited_url
from ragcord.knowledge.embedders import Embedder
from ragcord.knowledge.search import Hit
from ragcord.memory import Conversation

log = logging.getLogger(__name__)

NOT_FOUND = "I couldn't find this in the knowledge base."
_TITLED = re.compile(r"^[^—–.]{1,60}\s[—–]\s")  # "Base64 Encoding — encodes and decodes data"
_LIST_MARK = re.compile(r"^(?:[-*+•]|\d+[.)])\s+")
_ENTRY_DESCRIPTION = re.compile(r"\s[—–]\s|:\s")
_TITLE_SUFFIX = re.compile(r"\s+[—–|]\s+[^—–|]*$")
OTHER_PASSAGE = 10_000  # paragraph numbers of a second passage of one section, apart from the first's


def _snippet(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def section_label(hit: Hit) -> str:
    """ "Page title › Section" for the quote's intro, from the page title and the chunk's heading path."""
    headings = [h.strip() for h in hit.chunk.heading.split(" > ") if h.strip()]
    title = " ".join(hit.title.split())
    if headings and title.startswith(headings[0]):
        page, headings = headings[0], headings[1:]
    else:
        page = _TITLE_SUFFIX.sub("", title) or title or hit.url
    parts = [page, *headings[-2:]]
    return " › ".join(p.replace("*", "") for p in parts if p)


@dataclass(frozen=True)
class _Quote:
    rank: int  # of the hit quoted
    units: list[Unit]
    score: float


def _words(units: list[Unit]) -> int:
    return sum(len(u.text.split()) for u in units)


class ExtractiveAnswerer:
    name = "extractive"

    def __init__(
        self,
        *,
        min_similarity: float | None = None,
        min_term_coverage: float | None = None,
        max_words: int | None = None,
        max_passages: int | None = None,
        max_citations: int | None = None,
        considered: int | None = None,
        embedder: Embedder | None = None,
        tuning: AnswerTuning = DEFAULT_TUNING,
    ) -> None:
        given = {
            "min_similarity": min_similarity,
            "min_term_coverage": min_term_coverage,
            "max_words": max_words,
            "max_passages": max_passages,
            "max_citations": max_citations,
            "considered": considered,
        }
        self.tuning = tuning.with_values(**{k: v for k, v in given.items() if v is not None})
        t = self.tuning
        if t.opening_weights and len(t.opening_weights) != len(OPENING_FEATURES):
            raise ValueError(f"opening_weights needs one weight for each of {OPENING_FEATURES}")
        self.min_similarity = t.min_similarity
        self.min_term_coverage = t.min_term_coverage
        self.max_words = t.max_words
        self.max_passages = t.max_passages
        self.max_citations = t.max_citations
        self.embedder = embedder  # None: quotes are chosen by their words alone
        self.considered = t.considered  # the best passages quotes are chosen from; later ones are only linked

    def is_answered(self, question: str, hits: list[Hit]) -> bool:
        """Whether the best passages are about the question at all (absolute, not relative, scores)."""
        if not hits:
            return False
        if _missing_names(question, hits) or _listed_only(question, hits, self.tuning):
            return False
        best_coverage = max(coverage(question, hit.passage or hit.chunk.text) for hit in hits)
        similarities = [hit.vector_score for hit in hits if hit.vector_score is not None]
        if similarities:
            return max(similarities) >= self.min_similarity or best_coverage >= self.tuning.sure_term_coverage
        return best_coverage >= self.min_term_coverage

    def answer(
        self,
        question: str,
        hits: list[Hit],
        conversation: Conversation | None = None,
        *,
        instructions: str = "",
    ) -> Answer:
        """`instructions`: its `not found:` and `header:` lines are honoured (answering/instructions.py)."""
        rules = parse_instructions(instructions)
        answer = self._compose(question, hits, conversation, rules.not_found)
        if rules.header and answer.found:
            return dataclasses.replace(answer, text=f"{rules.header}\n\n{answer.text}")
        return answer

    def _compose(
        self, question: str, hits: list[Hit], conversation: Conversation | None, not_found: str
    ) -> Answer:
        if not self.is_answered(question, hits):
            return self._not_found(hits, not_found)
        earlier = [t.text for t in (conversation.turns if conversation else []) if t.role == "user"]
        if not is_follow_up(question):
            earlier = []  # a new topic in the same conversation: the earlier question's words are not wanted
        if earlier and not self._follow_up_held(question, earlier, hits):
            return self._not_found(hits, not_found)
        quotes = self._quotes(question, hits, earlier[-1] if earlier else "")
        if not quotes:
            return self._not_found(hits, not_found)
        numbers: dict[str, int] = {}
        citations: list[Citation] = []
        parts: list[str] = []
        for quote in quotes:
            hit = hits[quote.rank]
            url = cited_url(hit)
            body = _body(quote.units)
            if url not in numbers:
                numbers[url] = len(numbers) + 1
                citations.append(Citation(numbers[url], url, hit.title, _snippet(body), hit.score))
            parts.append(f"**{section_label(hit)}**\n{_cited(body, numbers[url], quote.units[-1])}")
        related = self._see_also(hits, citations)
        if related:
            citations += related
            parts.append("See also " + _listed([f"[{c.number}]" for c in related]) + ".")
        return Answer(text="\n\n".join(parts), citations=citations, found=True)

    def _follow_up_held(self, question: str, earlier: list[str], hits: list[Hit]) -> bool:
        """Whether the passages found for the thread speak of what the follow-up adds (see
        AnswerTuning.follow_up_own_coverage): its new words, or else its meaning read alone."""
        own = own_terms(earlier, question)
        considered = hits[: self.considered]
        if not own or not considered:
            return True
        seen = set(
            terms(" ".join(f"{h.title} {h.chunk.heading} {h.passage or h.chunk.text}" for h in considered))
        )
        if len(own & seen) / len(own) >= self.tuning.follow_up_own_coverage:
            return True
        if self.embedder is None:
            return False
        texts = [
            " ".join(f"{section_label(h)}\n{h.passage or h.chunk.text}".split()[:64]) for h in considered
        ]
        vectors = self.embedder.embed([question, *texts])
        best = max(sum(a * b for a, b in zip(vectors[0], v, strict=True)) for v in vectors[1:])
        return best >= self.min_similarity

    def _see_also(self, hits: list[Hit], cited: list[Citation]) -> list[Citation]:
        """Other pages the search ranked close to the quoted ones, one citation each, up to max_citations.

        The quote answers from one or two passages; when the search's next pages are nearly as strong, the
        reader gets them as links rather than as more text.
        """
        pages = {c.page_url for c in cited}
        top = max((h.score for h in hits), default=0.0)
        related: list[Citation] = []
        if top <= 0:
            return related
        close = [hit for hit in hits if hit.score >= self.tuning.see_also * top]
        for hit in close:
            if len(cited) + len(related) >= self.max_citations:
                break
            if hit.url in pages:
                continue
            pages.add(hit.url)
            number = len(cited) + len(related) + 1
            related.append(Citation(number, cited_url(hit), hit.title, _snippet(hit.chunk.text), hit.score))
        # Other pages first; room left (a manual on one page, a site with few pages) goes to other sections
        # of the pages already cited, which are links of their own.
        sections = {c.url for c in [*cited, *related]}
        for hit in close:
            if len(cited) + len(related) >= self.max_citations:
                break
            url = cited_url(hit)
            if url in sections or url == hit.url:
                continue  # a section cited already, or a page's top with no section of its own
            sections.add(url)
            number = len(cited) + len(related) + 1
            related.append(Citation(number, url, hit.title, _snippet(hit.chunk.text), hit.score))
        return related

    # --- choosing what to quote

    def _quotes(self, question: str, hits: list[Hit], earlier: str = "") -> list[_Quote]:
        """The best quotes, best first; `earlier` (the previous question) adds its terms at half weight."""
        asked = set(terms(question))
        context = set(terms(earlier)) - asked
        wanted = asked | context
        if not wanted:
            return []
        considered = hits[: self.considered]
        units = [passage_units(hit.passage or hit.chunk.text) for hit in considered]
        unit_terms = [[set(terms(u.text)) for u in found] for found in units]
        document_frequency: dict[str, int] = {}
        n = 0
        for passage_terms in unit_terms:
            for found_terms in passage_terms:
                n += 1
                for term in found_terms & wanted:
                    document_frequency[term] = document_frequency.get(term, 0) + 1
        if not n:
            return []
        how_to = asks_how_to(question)

        def weight(matched: set[str]) -> float:
            return sum(
                math.log(1 + n / document_frequency.get(t, 1)) * (0.5 if t in context else 1.0)
                for t in matched
            )

        candidates: list[tuple[float, int, int]] = []
        for rank, found in enumerate(units):
            heading_terms = set(terms(considered[rank].chunk.heading)) & wanted
            for index, unit in enumerate(found):
                if unit.kind == "label":
                    continue
                matched = unit_terms[rank][index] & wanted
                if not matched:
                    continue
                length = max(len(unit.text.split()), 8)
                score = (weight(matched) + 0.5 * weight(heading_terms)) / math.sqrt(length)
                if unit.kind == "code" and not how_to:
                    score *= 0.5
                if "`" in unit.text or unit.kind in ("code", "signature"):
                    score *= self.tuning.code_bonus
                candidates.append((score / (1 + self.tuning.rank_decay * rank), rank, index))
        candidates.sort(key=lambda c: -c[0])
        # The best units' quotes, ranked again as a reader sees them: how much of the question each covers.
        windows: list[tuple[float, int, list[Unit]]] = []
        top_page = [c for c in candidates if considered[c[1]].url == considered[0].url][:3]
        for _, rank, index in dict.fromkeys([*candidates[: self.tuning.windows], *top_page]):
            window = self._window(units[rank], index, how_to)
            if not window:
                continue
            covered = set().union(*(set(terms(u.text)) for u in window)) & wanted
            heading_terms = set(terms(considered[rank].chunk.heading)) & wanted
            score = weight(covered | heading_terms)
            if how_to and any(u.kind == "code" or "`" in u.text for u in window):
                score *= self.tuning.code_bonus
            score /= (1 + self.tuning.rank_decay * rank) * max(
                _words(window), 15
            ) ** self.tuning.window_length
            log.debug("quote %.3f from passage %d: %.60s", score, rank, window[0].text)
            windows.append((score, rank, window))
        by_words = [w[0] for w in windows]
        windows = self._semantic(question, earlier, considered, windows)
        # What the embedder made of each quote's score: its cosine over the best one's (1 without it).
        meaning = [w[0] / s if s > 0 else 1.0 for w, s in zip(windows, by_words, strict=True)]
        order = sorted(range(len(windows)), key=lambda i: -windows[i][0])
        windows, meaning = [windows[i] for i in order], [meaning[i] for i in order]
        if self.tuning.opening_weights:
            features = opening_features(question, windows, meaning, considered, how_to)
            opened = _learned_opening(windows, features, self.tuning.opening_weights, considered)
        else:
            opened = _top_page_first(windows, considered, self.tuning.top_page)
        return self._choose(opened, considered, units)

    def _semantic(
        self, question: str, earlier: str, hits: list[Hit], windows: list[tuple[float, int, list[Unit]]]
    ) -> list[tuple[float, int, list[Unit]]]:
        """Each quote's score weighed by how close its meaning is to the question's (the embedder's cosine).

        The word counts above see which quote shares the question's words, not which one says what it
        asks; the embedder that found the passages adds that. It reads each quote's section and first
        words only: whole quotes (code tokenizes into many word pieces) cost ~0.5 s an answer on 2 cores.
        """
        if self.embedder is None or len(windows) < 2:
            return windows
        query = f"{earlier}\n{question}" if earlier else question
        texts = [
            " ".join(f"{section_label(hits[rank])}\n{_body(window)}".split()[: self.tuning.semantic_words])
            for _, rank, window in windows
        ]
        # Windows of one passage, or of a page's copies, often read alike: each text is embedded once.
        distinct = list(dict.fromkeys(texts))
        vectors = self.embedder.embed([query, *distinct])
        by_text = dict(zip(distinct, vectors[1:], strict=True))
        similarities = [
            max(0.0, sum(a * b for a, b in zip(vectors[0], by_text[text], strict=True))) for text in texts
        ]
        top = max(similarities)
        if top <= 0:
            return windows
        return [
            (score * (similarity / top) ** self.tuning.semantic_power, rank, window)
            for (score, rank, window), similarity in zip(windows, similarities, strict=True)
        ]

    def _choose(
        self, windows: list[tuple[float, int, list[Unit]]], hits: list[Hit], units: list[list[Unit]]
    ) -> list[_Quote]:
        """The best quote, and others from other sections while they score close enough and fit.

        Sections first: another section that scores close enough to the best is worth more to the reader
        than more of a section already quoted, which only gets the words left over.
        """
        quotes: list[_Quote] = []
        words = 0
        extra: list[tuple[float, int, list[Unit]]] = []
        for score, rank, chosen in windows:
            if quotes and score < self.tuning.same_section * quotes[0].score:
                break
            same = [q for q in quotes if cited_url(hits[q.rank]) == cited_url(hits[rank])]
            if same:
                extra.append((score, rank, chosen))
                continue
            if quotes and score < self.tuning.second_quote * quotes[0].score:
                continue
            size = _words(chosen)
            if quotes and words + size > self.max_words * self.tuning.total_words:
                continue
            if len(quotes) < self.max_passages:
                words += size
                quotes.append(_Quote(rank, chosen, score))
        for _, rank, chosen in extra:  # one quote per section: more of it joins the first, in page order
            same = [q for q in quotes if cited_url(hits[q.rank]) == cited_url(hits[rank])]
            seen = {u.text for u in same[0].units}
            chosen = _whole([u for u in chosen if u.text not in seen])
            size = _words(chosen)
            if not chosen or words + size > self.max_words * self.tuning.total_words:
                continue
            words += size
            quotes[quotes.index(same[0])] = _joined(same[0], rank, chosen, hits, units)
        return quotes

    def _window(self, units: list[Unit], anchor: int, how_to: bool) -> list[Unit]:
        """Whole units around the best one: its paragraph, a lead-in's code or list, never a lone colon."""
        budget = self.max_words
        start = anchor
        unit = units[anchor]
        # Read from the paragraph's start when it is short, and take a code block's or item's lead-in.
        while start > 0 and units[start - 1].block == unit.block and units[start - 1].prose:
            if _words(units[start - 1 : anchor + 1]) > budget // 2:
                break
            start -= 1
        lead = _caption_skipped(units, start - 1, backwards=True) if unit.kind == "code" else start - 1
        if unit.kind in ("code", "item", "table") and start > 0 and units[lead].leads_in:
            start = lead
            while start > 0 and units[start - 1].kind == "item" and unit.kind == "item":
                start -= 1
        lead_in: list[Unit] = []
        if unit.kind == "item" and start == anchor:  # an item further down a list: what are the items?
            first = anchor
            while first > 0 and units[first - 1].kind == "item" and units[first - 1].block == unit.block:
                first -= 1
            if first > 0 and units[first - 1].leads_in:
                if _words(units[first - 1 : anchor + 1]) <= budget // 2:
                    start = first - 1  # the list from its lead-in
                else:
                    lead_in = [units[first - 1]]  # the lead-in, then the item that answers
        # An API entry's signature names what the section is about.
        signatures = [u for u in units[:start] if u.kind == "signature"]
        head = signatures[-1:]
        while start > 0 and units[start].kind == "continuation":
            start -= 1  # back to the sentence the code block interrupted
        while start > 0 and units[start].prose and units[start - 1].block == units[start].block:
            start -= 1
        if units[start].kind == "continuation":
            return []
        chosen = [*lead_in, *(u for u in units[start : anchor + 1] if u.kind != "label")]
        end = anchor + 1
        while end < len(units):
            nxt = units[end]
            last = chosen[-1]
            if nxt.kind == "label" and last.leads_in and units[_caption_skipped(units, end)].kind == "code":
                end = _caption_skipped(units, end)  # a code block's caption ("TODO 7: CMakeLists.txt")
                nxt = units[end]
            if nxt.kind in ("label", "signature"):
                break
            needed = (
                last.leads_in
                or (last.kind == "item" and nxt.kind == "item")
                or (last.kind == "signature" and nxt.kind == "sentence" and nxt.block == last.block + 1)
            )
            same_paragraph = (
                (nxt.block == last.block and nxt.prose)
                or nxt.kind == "continuation"
                or (last.kind == "signature" and nxt.block == last.block + 1)
            )
            next_code = nxt.kind == "code" and nxt.block == last.block + 1 and last.kind != "code"
            wanted_code = (
                next_code and (how_to or nxt.text.count("\n") <= self.tuning.follow_code_lines + 1)
            ) or (
                how_to
                and not any(u.kind == "code" for u in chosen)
                and nxt.prose
                and nxt.block == last.block + 1
                and _leads_to_code(units, end)
            )
            if not (needed or same_paragraph or wanted_code):
                break
            if nxt.kind == "code" and nxt.text.count("\n") > self.tuning.max_code_lines + 1:
                break
            if _words([*head, *chosen, nxt]) > budget and not needed:
                break
            if _words([*head, *chosen, nxt]) > budget * 2:
                break
            chosen.append(nxt)
            end += 1
        while chosen and not chosen[-1].complete:
            chosen.pop()  # never end on a lead-in whose code did not fit, nor a cut sentence
        if not any(u.prose or u.kind in ("item", "table") for u in chosen):
            lone_code = (
                len(chosen) == 1
                and chosen[0].kind == "code"
                and chosen[0].text.count("\n") <= self.tuning.lone_code_lines + 1
            )
            if not (chosen and chosen[0].kind == "code" and head) and not lone_code:
                return []  # a signature or code alone says too little
        if _words(chosen) < self.tuning.min_quote_words and not any(
            u.kind in ("code", "table") for u in chosen
        ):
            return []  # a lone list item (`- CMakeLists.txt` under "Files to Edit") answers nothing
        return [*head, *chosen]

    def _not_found(self, hits: list[Hit], not_found: str = "") -> Answer:
        """`not_found`: the knowledge base's own refusal (its instructions' `not found:` line), if any."""
        closest: list[Citation] = []
        for hit in hits:  # one per page, at the section of its best passage
            if hit.url not in {c.page_url for c in closest}:
                closest.append(
                    Citation(len(closest) + 1, cited_url(hit), hit.title, _snippet(hit.chunk.text), hit.score)
                )
            if len(closest) == 3:
                break
        if not_found:
            text = not_found + (
                "\n" + "\n".join(f"- {c.title} [{c.number}]" for c in closest) if closest else ""
            )
        elif closest:
            text = (
                NOT_FOUND
                + " The closest pages I have are:\n"
                + "\n".join(f"- {c.title} [{c.number}]" for c in closest)
            )
        else:
            text = NOT_FOUND + " It has no pages yet: ask an admin to crawl the documentation."
        return Answer(text=text, citations=closest, found=False)

    def stream(
        self,
        question: str,
        hits: list[Hit],
        conversation: Conversation | None = None,
        *,
        instructions: str = "",
    ) -> Iterator[str | Answer]:
        answer = self.answer(question, hits, conversation, instructions=instructions)
        yield answer.text
        yield answer


def _joined(quote: _Quote, rank: int, more: list[Unit], hits: list[Hit], units: list[list[Unit]]) -> _Quote:
    """A section's quote with more of it: from the same passage in its order, else before or after it."""
    if rank == quote.rank and all(u in units[rank] for u in quote.units):
        return _Quote(quote.rank, sorted([*quote.units, *more], key=units[rank].index), quote.score)
    if rank == quote.rank:  # the quote already joins two passages: read on after them
        return _Quote(quote.rank, [*quote.units, *more], quote.score)
    more = [dataclasses.replace(u, block=u.block + OTHER_PASSAGE) for u in more]  # its own paragraphs
    before = hits[rank].chunk.chunk_index < hits[quote.rank].chunk.chunk_index
    return _Quote(quote.rank, [*more, *quote.units] if before else [*quote.units, *more], quote.score)


def _top_page_first(
    windows: list[tuple[float, int, list[Unit]]], hits: list[Hit], top_page: float
) -> list[tuple[float, int, list[Unit]]]:
    """The search's best page opens the answer when it has a quote nearly as good as the best one.

    The search ranks pages by all their evidence; the quote scores see one passage's words. When they
    disagree the page is more often right, so its best quote goes first (the others keep their order).
    """
    if not windows or not hits:
        return windows
    top = hits[0].url
    best = windows[0][0]
    for position, window in enumerate(windows):
        if hits[window[1]].url == top:
            if position and window[0] >= top_page * best:
                return [window, *windows[:position], *windows[position + 1 :]]
            break
    return windows


OPENING_FEATURES = (
    "score",  # the quote's score (words, then meaning) over the best quote's
    "meaning",  # the embedder's cosine to the question over the best quote's (1 without an embedder)
    "rank",  # the passage's place in the search, over the passages considered
    "top_page",  # the quote is on the search's best page
    "code_block",  # the quote holds a code block
    "how_to_code",  # ... and the question asks how to do something
    "inline_code",  # the quote names code inline (`name`) or is an API entry (its signature)
    "heading",  # share of the question's terms in the quote's page title and section
    "phrase",  # share of the question's adjacent term pairs found adjacent in the quote
    "covered",  # share of the question's terms in the quote
    "search",  # the passage's search score over the best one's
    "cosine",  # the passage's cosine to the query over the best one's (0: the vector search missed it)
    "keyword",  # the passage's BM25 score over the best one's (0: the keyword search missed it)
    "entry",  # the quote opens with an API entry's signature or an option's name
    "length",  # the quote's words over max_words' default (at most 1)
)


def opening_features(
    question: str,
    windows: list[tuple[float, int, list[Unit]]],
    meaning: list[float],
    hits: list[Hit],
    how_to: bool,
) -> list[list[float]]:
    """What the learned opening choice (`AnswerTuning.opening_weights`) reads of each candidate quote,
    in the order of `OPENING_FEATURES`; each is 0..1 and says nothing of a site's own wording."""
    asked = terms(question)
    wanted = set(asked)
    pairs = set(zip(asked, asked[1:], strict=False))
    best = windows[0][0] if windows and windows[0][0] > 0 else 1.0
    top_search = max((h.score for h in hits), default=0.0) or 1.0
    top_cosine = max((h.vector_score or 0.0 for h in hits), default=0.0) or 1.0
    top_keyword = max((h.keyword_score or 0.0 for h in hits), default=0.0) or 1.0
    rows: list[list[float]] = []
    for (score, rank, units), relative in zip(windows, meaning, strict=True):
        hit = hits[rank]
        said = terms(" ".join(u.text for u in units))
        titled = set(terms(section_label(hit)))
        code = any(u.kind == "code" for u in units)
        rows.append(
            [
                score / best,
                relative,
                rank / len(hits),
                float(hit.url == hits[0].url),
                float(code),
                float(code and how_to),
                float(any("`" in u.text or u.kind == "signature" for u in units)),
                len(wanted & titled) / len(wanted) if wanted else 0.0,
                len(pairs & set(zip(said, said[1:], strict=False))) / len(pairs) if pairs else 0.0,
                len(wanted & set(said)) / len(wanted) if wanted else 0.0,
                hit.score / top_search,
                max(hit.vector_score or 0.0, 0.0) / top_cosine,
                max(hit.keyword_score or 0.0, 0.0) / top_keyword,
                float(bool(units) and units[0].kind == "signature"),
                min(_words(units) / DEFAULT_TUNING.max_words, 1.0),  # the default: as the weights learned it
            ]
        )
    return rows


def _learned_opening(
    windows: list[tuple[float, int, list[Unit]]],
    features: list[list[float]],
    weights: tuple[float, ...],
    hits: list[Hit],
) -> list[tuple[float, int, list[Unit]]]:
    """The section the learned weights score highest opens the answer, with its best quote by words (the
    others keep their order): the weights choose what to quote first, not where to cut it."""
    firsts = section_firsts(windows, hits)
    if not firsts:
        return windows
    learned = {i: sum(w * f for w, f in zip(weights, features[i], strict=True)) for i in firsts}
    best = max(firsts, key=lambda i: (learned[i], -i))
    return [windows[best], *windows[:best], *windows[best + 1 :]]


def section_firsts(windows: list[tuple[float, int, list[Unit]]], hits: list[Hit]) -> list[int]:
    """The index of each section's first (best) quote, in order."""
    seen: set[str] = set()
    firsts = []
    for index, (_, rank, _units) in enumerate(windows):
        if (url := cited_url(hits[rank])) not in seen:
            seen.add(url)
            firsts.append(index)
    return firsts


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _cited(body: str, number: int, last: Unit) -> str:
    """The quote with its citation after its last sentence, or on a line after a code block or table."""
    return f"{body}\n[{number}]" if last.kind in ("code", "table") else f"{body} [{number}]"


def _missing_names(question: str, hits: list[Hit]) -> set[str]:
    """Names the question asks about (`base64`, `sha256`: letters and digits) that no passage mentions.

    Such a name is what the question is about; when none of the passages has it, they answer something else.
    """
    names = {t for t in terms(question) if re.match(r"[a-z]{2,}\d", t, re.I)}
    if not names:
        return set()
    seen = " ".join(f"{h.title} {h.chunk.heading} {h.passage or h.chunk.text}" for h in hits).lower()
    return {name for name in names if name.lower() not in seen}


def _listed_only(question: str, hits: list[Hit], tuning: AnswerTuning) -> set[str]:
    """The question's terms that the passages name only in a table of contents, nowhere else.

    A page the crawl left out is often still listed by the pages that link to it ("- Celery Background
    Tasks" in a site's index): the knowledge base knows the title, not the page. A question whose word is
    found only there asks about what the knowledge base does not hold.
    """
    wanted = set(terms(question))
    listed: set[str] = set()
    held: set[str] = set()
    for hit in hits:
        held.update(terms(f"{hit.title} {hit.chunk.heading}"))
        text = hit.passage or hit.chunk.text
        units = passage_units(text)
        contents = _contents(units, tuning)
        if not contents:  # all its words, even of a sentence a chunk boundary cut (not a unit)
            held.update(terms(text))
        for index, unit in enumerate(units):
            if index in contents:  # an entry's title names a page; its description is no evidence either way
                listed.update(terms(_entry_title(unit.text)))
            else:
                held.update(terms(unit.text))
    return (wanted & listed) - held


def _contents(units: list[Unit], tuning: AnswerTuning) -> set[int]:
    """The units that are a table of contents: a run of at least `contents_items` short entries that start
    like a title, each a list item that is no sentence or a paragraph of its own that reads "Title — what
    it is" (gtk-doc's indexes). "- a harddrive crashed" in a list of causes is no title."""
    runs: list[list[int]] = [[]]
    for index, unit in enumerate(units):
        neighbours = [*units[index - 1 : index], *units[index + 1 : index + 2]]
        title = _entry_title(unit.text)
        titled = title[:1].isupper() or title[:1].isdigit() or title.startswith("`")  # a title, not a phrase
        entry = (
            titled
            and len(unit.text.split()) <= tuning.contents_item_words
            and (
                (unit.kind == "item" and not unit.text.rstrip().endswith((".", "!", "?")))
                or (
                    unit.kind in ("sentence", "label")
                    and bool(_TITLED.match(unit.text))
                    and all(u.block != unit.block for u in neighbours)  # a paragraph of its own
                )
            )
        )
        if entry:
            runs[-1].append(index)
        elif runs[-1]:
            runs.append([])
    return {index for run in runs if len(run) >= tuning.contents_items for index in run}


def _entry_title(text: str) -> str:
    """A contents entry's title: without its list mark, before " — what it is" or ": what it is"."""
    return _ENTRY_DESCRIPTION.split(_LIST_MARK.sub("", text.strip()), maxsplit=1)[0]


def _whole(units: list[Unit]) -> list[Unit]:
    """What reads whole of units left after some were taken out (they were quoted already).

    A sentence that goes on after a code block needs that block before it, and a lead-in its code or
    list after it: without them each is a fragment ("creates a new instance of the class and ...").
    """
    kept: list[Unit] = []
    for unit in units:
        if unit.kind == "continuation" and not (kept and kept[-1].kind == "code"):
            continue
        if kept and kept[-1].leads_in and unit.kind not in ("code", "item", "table"):
            kept.pop()
        kept.append(unit)
    while kept and not kept[-1].complete:
        kept.pop()
    return kept


def _caption_skipped(units: list[Unit], index: int, *, backwards: bool = False) -> int:
    """`index` moved past up to two labels: the captions a page puts between a lead-in and its code."""
    step = -1 if backwards else 1
    moved = index
    while 0 <= moved + step < len(units) and units[moved].kind == "label" and abs(moved - index) < 2:
        moved += step
    return moved if units[moved].kind != "label" else index


def _leads_to_code(units: list[Unit], start: int) -> bool:
    """Whether the paragraph starting at `start` ends with a colon right before a code block."""
    index = start
    while index + 1 < len(units) and units[index + 1].block == units[start].block:
        index += 1
    return units[index].leads_in and index + 1 < len(units) and units[index + 1].kind == "code"


def _body(units: list[Unit]) -> str:
    """The quoted units: a paragraph's sentences on one line, every other unit on lines of its own."""
    out = ""
    for previous, unit in zip([None, *units], units, strict=False):
        if previous is None:
            out = _shown(unit)
        elif previous.block == unit.block and previous.prose and unit.prose:
            out += " " + unit.text
        else:
            out += "\n" + _shown(unit)
    return out


def _shown(unit: Unit) -> str:
    """A unit as the answer shows it: a signature as inline code, everything else as the page wrote it."""
    return f"`{unit.text}`" if unit.kind == "signature" else unit.text
