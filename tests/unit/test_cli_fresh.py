"""`ragcord crawl --full --sitemap ...` (issue 22): the options reach StartCrawl as asked."""

from __future__ import annotations

import pytest

from cli.main import build_parser


def test_crawl_is_incremental_with_sitemaps_by_default():
    args = build_parser().parse_args(["crawl", "http://x/docs/"])
    assert args.full is False and args.sitemap == "include"


def test_crawl_takes_full_and_a_sitemap_mode_and_refuses_another():
    args = build_parser().parse_args(["crawl", "http://x/docs/", "--full", "--sitemap", "only"])
    assert args.full is True and args.sitemap == "only"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["crawl", "http://x/docs/", "--sitemap", "sometimes"])
