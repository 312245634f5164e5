"""URL rules shared by the admin API and the crawler: normalisation, crawl scope, the address guard."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urldefrag, urlsplit, urlunsplit

import regex  # type: ignore[import-untyped]  # re's syntax with a timeout: a scope pattern never hangs

from ragcord.errors import Blocked, InvalidArgument, PermissionDenied

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Query parameters that never select content: search-term highlighting and click tracking. Anything
# else may pick the page (`?page=2`, `?id=`, `?ref=main` on code hosts), so it stays.
_NON_CONTENT_PARAMS = frozenset(
    ("highlight", "fbclid", "gclid", "dclid", "msclkid", "yclid", "mc_cid", "mc_eid", "_ga", "_gl", "igshid")
)
_DIRECTORY_INDEX = "index.html"
KB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def validate_kb_name(name: str) -> str:
    if not KB_NAME.match(name):
        raise InvalidArgument(
            f"knowledge_base {name!r} is not valid: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def _content_query(query: str) -> str:
    """The query without highlighting and tracking parameters, otherwise byte for byte as given."""
    kept = []
    for pair in query.split("&"):
        name = unquote_plus(pair.split("=", 1)[0]).lower()
        if pair and name not in _NON_CONTENT_PARAMS and not name.startswith("utm_"):
            kept.append(pair)
    return "&".join(kept)


def normalize_url(url: str) -> str:
    """The one form of a page's URL, for dedupe and ids.

    No fragment, lowercase scheme and host, no default port, `dir/index.html` is `dir/`, and no
    highlighting or tracking query parameters.
    """
    url, _ = urldefrag(url.strip())
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    path = parts.path or "/"
    if path.endswith("/" + _DIRECTORY_INDEX):
        path = path.removesuffix(_DIRECTORY_INDEX)
    return urlunsplit((scheme, netloc, path, _content_query(parts.query), ""))


MAX_URL_CHARS = 2048  # a seed longer than browsers and servers accept is a mistake (or an attack)


def parse_seed(url: str) -> str:
    """Check that `url` can seed a crawl and return it normalised; raises InvalidArgument."""
    if not url or not url.strip():
        raise InvalidArgument("url is required, e.g. https://docs.example.com/")
    if len(url) > MAX_URL_CHARS:
        raise InvalidArgument(
            f"url {url[:60]!r}… is {len(url)} characters; a seed URL has at most {MAX_URL_CHARS}"
        )
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidArgument(f"url {url!r} is not a well-formed URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidArgument(f"url {url!r} must use http or https, not {parts.scheme or 'no scheme'!r}")
    if not parts.hostname:
        raise InvalidArgument(f"url {url!r} has no host; write it as https://host/path")
    return normalize_url(url)


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"))
    )


def addresses(host: str, port: int) -> list[str]:
    """`host`'s addresses in the resolver's order of preference; socket.gaierror when it has none."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve(host: str, port: int) -> list[str]:
    """`host`'s addresses, sorted, for the address guard; InvalidArgument when it has none."""
    try:
        found = addresses(host, port)
    except socket.gaierror as exc:
        raise InvalidArgument(f"host {host[:80]!r} does not resolve: {exc.strerror}") from None
    except UnicodeError as exc:  # the IDNA codec refuses it: an empty label, or one over 63 characters
        raise InvalidArgument(f"host {host[:80]!r} is not a valid host name ({exc})") from None
    return sorted(found)


Resolver = Callable[[str, int], Iterable[str]]  # (host, port) -> its addresses


def check_address_allowed(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> None:
    """Refuse URLs whose host is or resolves to a private, loopback or link-local address.

    Raises PermissionDenied (the crawler turns it into Blocked) unless `allow_private`.
    """
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)
    for address in resolver(host, port):
        if not is_public_address(address):
            raise PermissionDenied(
                f"{host} resolves to {address}, a private, loopback or link-local address; "
                "to crawl internal sites, start the server (ragcord serve, or its workers and admin API) "
                "with RAGCORD_ALLOW_PRIVATE_NETWORKS=true: it is the server's setting, not the client's"
            )


def guard_fetch(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> None:
    """The crawler's form of the address guard: raises Blocked."""
    try:
        check_address_allowed(url, allow_private=allow_private, resolver=resolver)
    except (PermissionDenied, InvalidArgument) as exc:
        raise Blocked(str(exc)) from None


# Scope patterns are the caller's regular expressions, matched against every link a crawl finds: bounded
# in size and number, and each match given MATCH_TIMEOUT_SECONDS (a backtracking blow-up like (x+x+)+y
# is refused up front when a probe shows it, and any other slow match counts as out of scope).
MAX_PATTERNS = 50
MAX_PATTERN_CHARS = 500
MATCH_TIMEOUT_SECONDS = 0.05
_PROBE_LENGTH = 32


def _probes(pattern: str) -> list[str]:
    """Paths that make a backtracking pattern show itself: runs of the characters it names."""
    chars = sorted({c for c in pattern if c.isalnum() or c in "/-_.~"})[:12] or ["a"]
    return [f"/{c * _PROBE_LENGTH}\x00" for c in chars] + ["/" + "".join(chars) * 4 + "\x00"]


def compile_patterns(patterns: list[str], field_name: str) -> list[Any]:
    if len(patterns) > MAX_PATTERNS:
        raise InvalidArgument(f"{field_name}: at most {MAX_PATTERNS} patterns, not {len(patterns)}")
    compiled = []
    for pattern in patterns:
        if len(pattern) > MAX_PATTERN_CHARS:
            raise InvalidArgument(
                f"{field_name} {pattern[:40]!r}… is {len(pattern)} characters; "
                f"keep a pattern under {MAX_PATTERN_CHARS}"
            )
        try:
            compiled_pattern = regex.compile(pattern)
        except (regex.error, ValueError, OverflowError, RecursionError, MemoryError) as exc:
            raise InvalidArgument(
                f"{field_name} {pattern!r} is not a valid regular expression: {exc}"
            ) from None
        try:
            for probe in _probes(pattern):
                compiled_pattern.search(probe, timeout=MATCH_TIMEOUT_SECONDS)
        except TimeoutError:
            raise InvalidArgument(
                f"{field_name} {pattern!r} takes too long to match (nested repetition such as (a+)+ "
                "backtracks without end); write it without a repeated group that repeats"
            ) from None
        compiled.append(compiled_pattern)
    return compiled


def _search(pattern: Any, path: str) -> bool | None:
    """Whether `pattern` matches `path`; None when it took longer than MATCH_TIMEOUT_SECONDS."""
    try:
        return pattern.search(path, timeout=MATCH_TIMEOUT_SECONDS) is not None
    except TimeoutError:
        return None


@dataclass(frozen=True)
class Scope:
    """Which URLs belong to a crawl: the seed's host and path prefix, filtered by the patterns."""

    seed: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    _include: list[Any] = field(init=False, repr=False, compare=False)  # compiled `regex` patterns
    _exclude: list[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_include", compile_patterns(list(self.include), "include_patterns"))
        object.__setattr__(self, "_exclude", compile_patterns(list(self.exclude), "exclude_patterns"))

    @property
    def origin(self) -> tuple[str, str]:
        parts = urlsplit(self.seed)
        return parts.scheme, parts.netloc

    @property
    def prefix(self) -> str:
        path = urlsplit(self.seed).path or "/"
        return path if path.endswith("/") else path.rsplit("/", 1)[0] + "/"

    def why_outside(self, url: str) -> str | None:
        """None when `url` (normalised) is in scope, else a short reason."""
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != self.origin:
            return "out of scope: another host"
        path = parts.path or "/"
        if not (path.startswith(self.prefix) or path + "/" == self.prefix):
            return f"out of scope: not under {self.prefix}"
        included = [_search(p, path) for p in self._include]
        excluded = [_search(p, path) for p in self._exclude]
        if None in included or None in excluded:
            return "out of scope: a scope pattern took too long to match this URL"
        if self._include and not any(included):
            return "out of scope: matches no include pattern"
        if any(excluded):
            return "out of scope: matches an exclude pattern"
        return None
