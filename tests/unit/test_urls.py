from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragcord.crawls import DEFAULT_MAX_DEPTH, DEFAULT_MAX_PAGES, validate_crawl
from ragcord.errors import InvalidArgument, PermissionDenied
from ragcord.settings import Settings
from ragcord.urls import Scope, is_public_address, normalize_url, parse_seed


def settings(**kw) -> Settings:
    return Settings(_env_file=None, **kw)


def public_resolver(host, port):
    return ["93.184.216.34"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://Docs.Example.COM:80/a/b?x=1#frag", "http://docs.example.com/a/b?x=1"),
        ("https://docs.example.com:443", "https://docs.example.com/"),
        ("https://docs.example.com:8443/x", "https://docs.example.com:8443/x"),
        ("http://[::1]:8000/docs/", "http://[::1]:8000/docs/"),
        ("http://d.example/docs/index.html", "http://d.example/docs/"),
        ("http://d.example/index.html#top", "http://d.example/"),
        ("http://d.example/docs/index.html?page=2", "http://d.example/docs/?page=2"),
        ("http://d.example/docs/myindex.html", "http://d.example/docs/myindex.html"),
        ("http://d.example/a.html?highlight=lru_cache", "http://d.example/a.html"),
        ("http://d.example/a.html?utm_source=x&utm_Medium=y&id=3", "http://d.example/a.html?id=3"),
        ("http://d.example/a.html?fbclid=1&gclid=2&msclkid=3", "http://d.example/a.html"),
        ("http://d.example/a.html?section=worker&highlight=x", "http://d.example/a.html?section=worker"),
        ("http://d.example/blob?ref=main&path=a%20b", "http://d.example/blob?ref=main&path=a%20b"),
    ],
)
def test_normalize_url_makes_one_form_per_page(raw, expected):
    assert normalize_url(raw) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/docs", "must use http or https"),
        ("http:///docs", "has no host"),
        ("docs.example.com/guide", "must use http or https"),
        ("", "url is required"),
        ("http://example.com:99999/", "not a well-formed URL"),
    ],
)
def test_bad_seed_urls_say_what_to_fix(url, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_seed(url)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
    ],
)
def test_address_guard_classifies_addresses(address, public):
    assert is_public_address(address) is public


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/docs/",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8000/docs/",
        "http://localhost:8000/",
    ],
)
def test_private_seeds_are_refused_unless_allowed(url):
    with pytest.raises(PermissionDenied, match="start the server .* RAGCORD_ALLOW_PRIVATE_NETWORKS=true"):
        validate_crawl(settings(), url=url, knowledge_base="docs")
    spec = validate_crawl(settings(allow_private_networks=True), url=url, knowledge_base="docs")
    assert spec.url == normalize_url(url)


def test_a_hostname_resolving_to_loopback_is_refused():
    def resolver(host, port):
        return ["127.0.0.1"]

    with pytest.raises(PermissionDenied, match="resolves to 127.0.0.1"):
        validate_crawl(
            settings(), url="http://innocent.example/docs/", knowledge_base="docs", resolver=resolver
        )


def test_crawl_defaults_and_limits():
    spec = validate_crawl(
        settings(), url="https://docs.example.com/guide/", knowledge_base="docs", resolver=public_resolver
    )
    assert (spec.max_pages, spec.max_depth) == (DEFAULT_MAX_PAGES, DEFAULT_MAX_DEPTH)
    with pytest.raises(InvalidArgument, match="max_pages"):
        validate_crawl(
            settings(),
            url="https://d.example.com/",
            knowledge_base="docs",
            max_pages=-1,
            resolver=public_resolver,
        )
    with pytest.raises(InvalidArgument, match="knowledge_base"):
        validate_crawl(
            settings(), url="https://d.example.com/", knowledge_base="Bad Name!", resolver=public_resolver
        )
    with pytest.raises(InvalidArgument, match="include_patterns '\\(' is not a valid regular expression"):
        validate_crawl(
            settings(),
            url="https://d.example.com/",
            knowledge_base="docs",
            include_patterns=["("],
            resolver=public_resolver,
        )


def test_scope_is_the_seed_host_and_path_prefix():
    scope = Scope("http://d.example.com/docs/index.html", exclude=("/private/",))
    assert scope.prefix == "/docs/"
    assert scope.why_outside("http://d.example.com/docs/a.html") is None
    assert scope.why_outside("http://d.example.com/docs") is None
    assert "another host" in scope.why_outside("http://other.example.com/docs/a.html")
    assert "another host" in scope.why_outside("https://d.example.com/docs/a.html")
    assert "not under /docs/" in scope.why_outside("http://d.example.com/blog/a.html")
    assert "exclude" in scope.why_outside("http://d.example.com/docs/private/x.html")
    only_api = Scope("http://d.example.com/docs/", include=("^/docs/api/",))
    assert only_api.why_outside("http://d.example.com/docs/api/x") is None
    assert "include" in only_api.why_outside("http://d.example.com/docs/guide/x")


@given(st.text(alphabet="abc/.-_?=&%", max_size=30))
def test_normalizing_twice_changes_nothing(path):
    url = normalize_url(f"http://Example.com/{path}")
    assert normalize_url(url) == url
