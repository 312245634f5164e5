"""The answer-quality suite on real documentation: sites, questions and the checks that keep them honest.

The data lives beside this module (`sites.yaml`, `questions.yaml`); `bench/quality.py` runs it against the
real processes, `tests/unit/test_quality_suite.py` runs `validate` so a broken question fails fast.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin

import lxml.html
import yaml

from ragcord.urls import Scope, normalize_url

HERE = Path(__file__).resolve().parent
# The outside check: a site of its own (sites.yaml and questions.yaml there), never tuned on.
OUTSIDE = HERE / "outside"
# Any origin will do: Scope only compares paths once the host matches.
ORIGIN = "http://quality.invalid"

MIN_QUESTIONS = 80
MIN_QUESTION_SITES = 4
MIN_CONVERSATIONS = 20
MIN_OFF_TOPIC = 10
MISSING_RANGE = (4, 16)


@dataclass(frozen=True)
class Site:
    """One documentation site served from a directory, and the crawl scope the suite indexes."""

    name: str
    generator: str
    package: str
    root: Path
    seed: str
    max_pages: int
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    tuned_on: bool = True  # false: no rule or number was ever chosen on this site (leave-one-site-out)

    @functools.cached_property
    def scope(self) -> Scope:
        return Scope(f"{ORIGIN}/{self.seed}", self.include, self.exclude)

    def in_scope(self, page: str) -> bool:
        """Whether the crawl may index `page` (a path relative to root, with or without #fragment)."""
        return self.scope.why_outside(f"{ORIGIN}/{page_path(page).lstrip('/')}") is None

    def file(self, page: str) -> Path:
        path = page_path(page).lstrip("/")
        return self.root / (path + "index.html" if not path or path.endswith("/") else path)

    def reachable_pages(self) -> set[str]:
        """Pages a crawl from the seed reaches through in-scope links, as file paths relative to root."""
        seen = {self._as_file(self.seed)}
        queue = [self.seed]
        while queue:
            page = queue.pop()
            file = self.file(page)
            if not file.is_file() or not file.suffix.startswith(".htm"):
                continue
            for href in _parsed(file).xpath("//a/@href"):
                url = normalize_url(urljoin(f"{ORIGIN}/{page}", str(href)))  # as the crawler writes it
                if not url.startswith(f"{ORIGIN}/") or self.scope.why_outside(url) is not None:
                    continue
                target = unquote(url.removeprefix(f"{ORIGIN}/"))
                if self._as_file(target) not in seen:
                    seen.add(self._as_file(target))
                    queue.append(target)
        return seen

    def _as_file(self, page: str) -> str:
        return str(self.file(page).relative_to(self.root))

    def scoped_pages(self) -> list[str]:
        """Every HTML file under root the scope admits (a superset of what a crawl reaches)."""
        pages = (str(f.relative_to(self.root)) for f in self.root.rglob("*.htm*"))
        return sorted(p for p in pages if self.in_scope(p))


@dataclass(frozen=True)
class Question:
    """A single question and what a good answer cites (any of `expected`) and says (any of `key_terms`)."""

    id: str
    site: str
    question: str
    expected: tuple[str, ...]
    key_terms: tuple[str, ...]


@dataclass(frozen=True)
class Conversation:
    """Two turns; only the second, which makes sense only after `first`, is scored."""

    id: str
    site: str
    first: str
    question: str
    expected: tuple[str, ...]
    key_terms: tuple[str, ...]


@dataclass(frozen=True)
class OffTopic:
    """A question no documentation site answers: the right answer is an honest refusal."""

    id: str
    site: str
    question: str


@dataclass(frozen=True)
class Missing:
    """Answered only on `page`, which the scope leaves out: refuse rather than cite a wrong page.

    With `first`, the question is the second turn of a conversation that opened with `first` (a follow-up
    about something the knowledge base does not hold)."""

    id: str
    site: str
    question: str
    page: str
    key_terms: tuple[str, ...]
    first: str = ""


Item = Question | Conversation | OffTopic | Missing


@dataclass(frozen=True)
class Suite:
    sites: dict[str, Site]
    questions: tuple[Question, ...]
    conversations: tuple[Conversation, ...]
    off_topic: tuple[OffTopic, ...]
    missing: tuple[Missing, ...]

    def items(self) -> list[Item]:
        return [*self.questions, *self.conversations, *self.off_topic, *self.missing]

    def only(self, sites: set[str] | None = None, limit: int | None = None) -> Suite:
        """A smaller suite for quick runs: some sites, at most `limit` items of each kind per site."""

        def pick(items: tuple[Any, ...]) -> tuple[Any, ...]:
            kept = [i for i in items if sites is None or i.site in sites]
            if limit is None:
                return tuple(kept)
            seen: Counter[str] = Counter()
            out = []
            for item in kept:
                seen[item.site] += 1
                if seen[item.site] <= limit:
                    out.append(item)
            return tuple(out)

        return Suite(
            sites={n: s for n, s in self.sites.items() if sites is None or n in sites},
            questions=pick(self.questions),
            conversations=pick(self.conversations),
            off_topic=pick(self.off_topic),
            missing=pick(self.missing),
        )


def page_path(page: str) -> str:
    """The page without its #fragment."""
    return page.split("#", 1)[0]


def page_fragment(page: str) -> str:
    return page.split("#", 1)[1] if "#" in page else ""


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value)


def load_suite(directory: Path = HERE, questions: str = "questions.yaml") -> Suite:
    """Read sites.yaml and a question file (`heldout.yaml`: the held-out set); `validate` checks them."""
    raw_sites = yaml.safe_load((directory / "sites.yaml").read_text())["sites"]
    sites = {
        s["name"]: Site(
            name=s["name"],
            generator=s["generator"],
            package=s["package"],
            root=Path(s["root"]),
            seed=s["seed"],
            max_pages=int(s["max_pages"]),
            include=_strings(s.get("include")),
            exclude=_strings(s.get("exclude")),
            missing=_strings(s.get("missing")),
            tuned_on=bool(s.get("tuned_on", True)),
        )
        for s in raw_sites
    }
    raw = yaml.safe_load((directory / questions).read_text())
    return Suite(
        sites=sites,
        questions=tuple(
            Question(q["id"], q["site"], q["question"], _strings(q["expected"]), _strings(q["key_terms"]))
            for q in raw["questions"]
        ),
        conversations=tuple(
            Conversation(
                c["id"],
                c["site"],
                c["first"],
                c["question"],
                _strings(c["expected"]),
                _strings(c["key_terms"]),
            )
            for c in raw.get("conversations") or ()
        ),
        off_topic=tuple(OffTopic(o["id"], o["site"], o["question"]) for o in raw.get("off_topic") or ()),
        missing=tuple(
            Missing(
                m["id"], m["site"], m["question"], m["page"], _strings(m["key_terms"]), m.get("first", "")
            )
            for m in raw.get("missing") or ()
        ),
    )


@functools.cache
def _parsed(file: Path) -> lxml.html.HtmlElement:
    # Bytes, not str: lxml refuses a str that starts with an XML declaration (DocBook XHTML).
    tree = lxml.html.fromstring(file.read_bytes())
    for element in tree.xpath("//script|//style"):
        element.drop_tree()
    return tree


@functools.cache
def page_text(file: Path) -> str:
    """The page's visible text, lowercased with whitespace collapsed, for key-term checks."""
    return " ".join(_parsed(file).text_content().split()).lower()


def has_term(text: str, term: str) -> bool:
    return " ".join(term.split()).lower() in text


def _has_anchor(file: Path, fragment: str) -> bool:
    return bool(_parsed(file).xpath("//*[@id=$f or @name=$f]", f=fragment))


def _check_expected(
    site: Site, where: str, pages: tuple[str, ...], terms: tuple[str, ...], reachable: set[str]
) -> list[str]:
    problems = []
    if not pages:
        problems.append(f"{where}: no expected page")
    if not terms:
        problems.append(f"{where}: no key term")
    for page in pages:
        file = site.file(page)
        if not file.is_file():
            problems.append(f"{where}: expected page {page} does not exist under {site.root}")
            continue
        if not site.in_scope(page):
            problems.append(f"{where}: expected page {page} is outside the crawl scope of {site.name}")
        elif str(file.relative_to(site.root)) not in reachable:
            problems.append(f"{where}: no in-scope link leads from {site.seed} to {page_path(page)}")
        fragment = page_fragment(page)
        if fragment and not _has_anchor(file, fragment):
            problems.append(f"{where}: {page_path(page)} has no element with id {fragment!r}")
        if terms and not any(has_term(page_text(file), t) for t in terms):
            problems.append(f"{where}: none of the key terms {list(terms)} occurs in {page_path(page)}")
    return problems


def _check_missing(site: Site, item: Missing) -> list[str]:
    where = f"missing {item.id}"
    file = site.file(item.page)
    if not file.is_file():
        return [f"{where}: page {item.page} does not exist under {site.root}"]
    problems = []
    if site.in_scope(item.page):
        problems.append(f"{where}: page {item.page} is inside the crawl scope; exclude it in sites.yaml")
    if item.page not in site.missing:
        problems.append(f"{where}: page {item.page} is not listed under missing of site {site.name}")
    if not item.key_terms or not any(has_term(page_text(file), t) for t in item.key_terms):
        problems.append(f"{where}: none of the key terms {list(item.key_terms)} occurs in {item.page}")
    for page in site.scoped_pages():
        found = [t for t in item.key_terms if has_term(page_text(site.file(page)), t)]
        if found:
            problems.append(f"{where}: in-scope page {page} contains {found}, so the answer is not missing")
    return problems


def validate(suite: Suite) -> list[str]:
    """Every problem with the data, as sentences; empty when the suite is sound."""
    problems: list[str] = []
    for site in suite.sites.values():
        if not site.root.is_dir():
            problems.append(f"site {site.name}: root {site.root} is not a directory (install {site.package})")
            continue
        if not site.file(site.seed).is_file():
            problems.append(f"site {site.name}: seed {site.seed} does not exist")
        elif not site.in_scope(site.seed):
            problems.append(f"site {site.name}: seed {site.seed} is outside its own scope")
    items = suite.items()
    for item_id, count in Counter(i.id for i in items).items():
        if count > 1:
            problems.append(f"id {item_id} is used {count} times")
    for item in items:
        if item.site not in suite.sites:
            problems.append(f"{item.id}: unknown site {item.site}")
    if problems:
        return problems
    reachable = {name: site.reachable_pages() for name, site in suite.sites.items()}
    for q in suite.questions:
        site = suite.sites[q.site]
        problems += _check_expected(site, f"question {q.id}", q.expected, q.key_terms, reachable[q.site])
    for c in suite.conversations:
        site = suite.sites[c.site]
        problems += _check_expected(site, f"conversation {c.id}", c.expected, c.key_terms, reachable[c.site])
    for m in suite.missing:
        problems += _check_missing(suite.sites[m.site], m)
    return problems


def check_counts(suite: Suite) -> list[str]:
    """The minimums the full suite promises (quick runs with `only` are allowed to fall below)."""
    problems = []
    if len(suite.questions) < MIN_QUESTIONS:
        problems.append(f"{len(suite.questions)} questions, fewer than {MIN_QUESTIONS}")
    asked = {q.site for q in suite.questions}
    generators = {suite.sites[s].generator.split()[0] for s in asked if s in suite.sites}
    themes = {suite.sites[s].generator for s in asked if s in suite.sites}
    if len(asked) < MIN_QUESTION_SITES:
        problems.append(f"questions cover {len(asked)} sites, fewer than {MIN_QUESTION_SITES}")
    if not {"sphinx", "docbook", "gtk-doc"} <= generators:
        problems.append(f"questions cover generators {sorted(generators)}: need sphinx, docbook and gtk-doc")
    if len([t for t in themes if t.startswith("sphinx")]) < 2:
        problems.append("questions cover only one Sphinx theme")
    if len(suite.conversations) < MIN_CONVERSATIONS:
        problems.append(f"{len(suite.conversations)} conversations, fewer than {MIN_CONVERSATIONS}")
    if len(suite.off_topic) < MIN_OFF_TOPIC:
        problems.append(f"{len(suite.off_topic)} off-topic questions, fewer than {MIN_OFF_TOPIC}")
    low, high = MISSING_RANGE
    if not low <= len(suite.missing) <= high:
        problems.append(f"{len(suite.missing)} missing-page questions, not between {low} and {high}")
    return problems
