"""robots.txt as RFC 9309 reads it (longest match, `*` and `$`), and what an unreadable one does to a page."""

from __future__ import annotations

import pytest

from ragcord.errors import Blocked, FetchFailed, TooLarge, TransientFetchError
from workers.crawler import FetchedPage, RobotsCache

RULES = """\
User-agent: *
Disallow: /docs/private/
Allow: /docs/private/public.html
Disallow: /*.pdf$
Disallow: /search?

User-agent: otherbot
Disallow: /
"""


class OneFile:
    """A fetcher whose robots.txt is `body`, or whose fetch raises `error`; counts the fetches."""

    def __init__(self, body: str = "", error: Exception | None = None) -> None:
        self.body, self.error, self.calls = body, error, 0

    def fetch(self, url: str, scope=None, *, html_only: bool = True, **options) -> FetchedPage:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return FetchedPage(url, url, 200, "text/plain", self.body.encode(), "utf-8")


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/docs/guide.html", True),
        ("/docs/private/keys.html", False),
        ("/docs/private/public.html", True),  # the longer Allow wins over the shorter Disallow
        ("/files/manual.pdf", False),  # `*` and `$`
        ("/files/manual.pdf.html", True),  # `$` anchors the end
        ("/search?q=venv", False),
        ("/search", True),
    ],
)
def test_rules_follow_rfc_9309(path, allowed):
    robots = RobotsCache(OneFile(RULES))
    assert robots.allowed(f"http://d.example{path}") is allowed


def test_robots_txt_is_fetched_once_per_site():
    fetcher = OneFile(RULES)
    robots = RobotsCache(fetcher)
    for path in ("/a", "/b", "/docs/private/x"):
        robots.allowed(f"http://d.example{path}")
    robots.allowed("http://other.example/a")
    assert fetcher.calls == 2


def test_a_missing_robots_txt_allows_everything():
    assert RobotsCache(OneFile(error=FetchFailed("HTTP 404"))).allowed("http://d.example/docs/private/x")


@pytest.mark.parametrize("error", [TooLarge("too large"), Blocked("redirected to a private address")])
def test_a_refused_robots_txt_disallows_everything(error):
    assert not RobotsCache(OneFile(error=error)).allowed("http://d.example/docs/")


def test_an_unreadable_robots_txt_is_retried_like_a_page_and_never_cached():
    fetcher = OneFile(error=TransientFetchError("timeout after 15s"))
    robots = RobotsCache(fetcher)
    unreadable = r"robots.txt of http://d.example could not be read: timeout"
    with pytest.raises(TransientFetchError, match=unreadable):
        robots.allowed("http://d.example/docs/")
    fetcher.error = None
    fetcher.body = "User-agent: *\nDisallow:\n"
    assert robots.allowed("http://d.example/docs/")  # the next attempt reads it
    assert fetcher.calls == 2
