"""ragcord's errors: one tree, so adapters (gRPC, Discord, CLI) map them in one place."""

from __future__ import annotations


class RagcordError(Exception):
    """Base class of every error ragcord raises on purpose."""


class InvalidArgument(RagcordError):
    """The caller's input is malformed; the message says what to fix."""


class PermissionDenied(RagcordError):
    """The input is well-formed but not allowed (e.g. a private address)."""


class NotFound(RagcordError):
    """The named job, knowledge base or source does not exist."""


class AlreadyExists(RagcordError):
    """What the call would create exists already (a knowledge base with a record or pages)."""


class Aborted(RagcordError):
    """A concurrent operation holds what the call needs (a crawl into the knowledge base is running)."""


class FailedPrecondition(RagcordError):
    """The operation does not apply in the current state (e.g. cancelling a finished job)."""


class OutOfRange(RagcordError):
    """A cursor points before what is still retained."""


class CrawlError(RagcordError):
    """A page could not be indexed."""


class Blocked(CrawlError):
    """The URL is outside what the crawl may fetch (private address, robots.txt, scope)."""


class TooLarge(CrawlError):
    """The response is larger than the configured size cap."""


class NotHtml(CrawlError):
    """The response is not an HTML document."""


class FetchFailed(CrawlError):
    """The server answered with a permanent error (4xx) or a malformed response."""


class Gone(FetchFailed):
    """The server answered 404 or 410: the page no longer exists (a re-crawl removes it)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Duplicate(CrawlError):
    """The page is crawled under another URL (a redirect to a page the crawl already has)."""


class ExtractionFailed(CrawlError):
    """The page was fetched but could not be parsed or read; `links` holds any that could still be read."""

    def __init__(self, message: str, *, links: list[str] | None = None) -> None:
        super().__init__(message)
        self.links = links or []


class UnreadableFile(ExtractionFailed):
    """A PDF, Markdown, RST or text file that cannot be read (broken, encrypted, empty): skipped."""


class TransientFetchError(CrawlError):
    """A timeout, connection error, 429 or 5xx: worth retrying."""


class StoreError(RagcordError):
    """The knowledge store refused an operation."""


class AnswerUnavailable(RagcordError):
    """The language model could not be reached or refused; nothing was answered."""
