"""The extractive answerer: no model. It quotes the sentences that best answer the question, each
passage followed by its citation, and says plainly when the knowledge base does not have the answer."""

from __future__ import annotations

import math
from collections.abc import Iterator

from ragcord.answering.text import coverage, sentences, terms
from ragcord.answering.types import Answer, Citation, cited_url
from ragcord.knowledge.search import Hit
from ragcord.memory import Conversation

NOT_FOUND = "I couldn't find this in the knowledge base."


def _snippet(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


class ExtractiveAnswerer:
    name = "extractive"

    def __init__(
        self,
        *,
        min_similarity: float = 0.28,
        min_term_coverage: float = 0.6,
        max_sentences: int = 4,
        max_words: int = 130,
        max_passages: int = 3,
    ) -> None:
        self.min_similarity = min_similarity
        self.min_term_coverage = min_term_coverage
        self.max_sentences = max_sentences
        self.max_words = max_words
        self.max_passages = max_passages

    def is_answered(self, question: str, hits: list[Hit]) -> bool:
        """Whether the best passages are about the question at all (absolute, not relative, scores)."""
        if not hits:
            return False
        best_coverage = max(coverage(question, hit.passage) for hit in hits)
        similarities = [hit.vector_score for hit in hits if hit.vector_score is not None]
        if similarities:
            return max(similarities) >= self.min_similarity or best_coverage >= 0.75
        return best_coverage >= self.min_term_coverage

    def answer(self, question: str, hits: list[Hit], conversation: Conversation | None = None) -> Answer:
        if not self.is_answered(question, hits):
            return self._not_found(hits)
        wanted = terms(question)
        units = [
            (rank, position, unit)
            for rank, hit in enumerate(hits[: self.max_passages * 2])
            for position, unit in enumerate(sentences(hit.passage))
        ]
        if not units or not wanted:
            return self._not_found(hits)
        document_frequency: dict[str, int] = {}
        unit_terms = [set(terms(unit)) for _, _, unit in units]
        for found in unit_terms:
            for term in found:
                document_frequency[term] = document_frequency.get(term, 0) + 1
        n = len(units)

        def score(index: int) -> float:
            rank, _, unit = units[index]
            matched = set(wanted) & unit_terms[index]
            weight = sum(math.log(1 + n / document_frequency[t]) for t in matched)
            length = max(len(unit.split()), 6)
            return weight / math.sqrt(length) * (1.0 / (1 + 0.35 * rank))

        ranked = sorted((i for i in range(n) if score(i) > 0), key=lambda i: -score(i))
        chosen: list[int] = []
        words = 0
        for index in ranked:
            size = len(units[index][2].split())
            if chosen and words + size > self.max_words:
                continue
            chosen.append(index)
            words += size
            if len(chosen) == self.max_sentences:
                break
        if not chosen:
            return self._not_found(hits)

        # Quote in page order, grouped by passage, each group followed by its citation.
        by_hit: dict[int, list[int]] = {}
        for index in sorted(chosen, key=lambda i: (units[i][0], units[i][1])):
            by_hit.setdefault(units[index][0], []).append(index)
        order = sorted(by_hit, key=lambda rank: min(chosen.index(i) for i in by_hit[rank]))
        # One citation per section quoted: passages of one section share its number.
        numbers: dict[str, int] = {}
        citations: list[Citation] = []
        parts: list[str] = []
        for rank in order:
            hit = hits[rank]
            url = cited_url(hit)
            text = " ".join(units[i][2] for i in by_hit[rank])
            if url not in numbers:
                numbers[url] = len(numbers) + 1
                citations.append(Citation(numbers[url], url, hit.title, _snippet(text), hit.score))
            parts.append(f"{text} [{numbers[url]}]")
        return Answer(text="\n\n".join(parts), citations=citations, found=True)

    def _not_found(self, hits: list[Hit]) -> Answer:
        closest: list[Citation] = []
        for hit in hits:  # one per page, at the section of its best passage
            if hit.url not in {c.page_url for c in closest}:
                closest.append(
                    Citation(len(closest) + 1, cited_url(hit), hit.title, _snippet(hit.chunk.text), hit.score)
                )
            if len(closest) == 3:
                break
        if closest:
            text = (
                NOT_FOUND
                + " The closest pages I have are:\n"
                + "\n".join(f"- {c.title} [{c.number}]" for c in closest)
            )
        else:
            text = NOT_FOUND + " It has no pages yet: ask an admin to crawl the documentation."
        return Answer(text=text, citations=closest, found=False)

    def stream(
        self, question: str, hits: list[Hit], conversation: Conversation | None = None
    ) -> Iterator[str | Answer]:
        answer = self.answer(question, hits, conversation)
        yield answer.text
        yield answer
