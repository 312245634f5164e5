"""A page message redelivered after its worker died: the sweep it may not have sent is sent again."""

from __future__ import annotations

from workers.pipeline import SWEEP, PageCrawler


class Jobs:
    def __init__(self, sweep_running: bool) -> None:
        self.running = sweep_running

    def begin_page(self, job_id: str, url: str) -> tuple[str, dict[str, bytes]]:
        return "done", {}  # the page was counted before: this delivery is a repeat

    def sweep_running(self, job_id: str) -> bool:
        return self.running


def crawler(jobs: Jobs, sent: list[tuple[str, str, int]]) -> PageCrawler:
    crawler = PageCrawler.__new__(PageCrawler)  # only crawl_page's first step: no Redis, store or fetcher
    crawler.jobs, crawler.pages = jobs, object()  # type: ignore[assignment]
    crawler.enqueue = lambda job_id, url, depth: sent.append((job_id, url, depth))
    return crawler


def test_a_redelivered_last_page_sends_the_sweep_again_while_it_is_pending():
    sent: list[tuple[str, str, int]] = []
    crawler(Jobs(sweep_running=True), sent).crawl_page("j1", "http://d.example/last.html", 2)
    assert sent == [("j1", SWEEP, 0)]


def test_a_repeat_with_no_sweep_pending_sends_nothing():
    sent: list[tuple[str, str, int]] = []
    crawler(Jobs(sweep_running=False), sent).crawl_page("j1", "http://d.example/last.html", 2)
    assert sent == []
