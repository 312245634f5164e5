"""Pages rendered by JavaScript: what a rendered page costs next to a static one, what the browser holds in
memory, and how often RENDER_AUTO would start a browser on static documentation.

One run, three measurements (the machines are shared and noisy: compare the ratios):
1. static pages of the fixture site: fetch + RENDER_AUTO's decision + extraction, per page;
2. a Docsify 4.13.1 site on loopback (the npm package's script, markdown pages of the tests): fetch + render
   in the worker's headless Chromium + extraction, per page, the browser's launch apart; the browser's
   proportional set size (PSS, over all its processes) once started, after each page and at the end;
3. RENDER_AUTO's rule over the HTML pages of Debian's doc packages on this machine (`/usr/share/doc`):
   how many it would render (each would start a browser on a static site).

Needs Debian's `chromium` and `npm` (to fetch docsify); says what is missing otherwise.
"""

from __future__ import annotations

import datetime
import json
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first

from bench import command_line
from ragcord.settings import Settings  # noqa: E402
from tests.browser_kit import docsify_site, pack_docsify  # noqa: E402
from tests.sitekit import FixtureSite  # noqa: E402
from workers.crawler import FetchedPage, Fetcher, extract  # noqa: E402
from workers.render import Browser, find_chromium, needs_render  # noqa: E402

SITE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "site"
ROUTES = ("", "#/install", "#/config", "#/scheduler")
RENDERS = 40
DEBIAN_DOCS = Path("/usr/share/doc")


def _pss_mb(browser: Browser) -> float:
    """PSS of the browser's processes (its process group), in MB."""
    process = browser._process  # noqa: SLF001 - the benchmark reads the process it measures
    if process is None:
        return 0.0
    group = process.proc.pid
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != group:
                continue
            for line in (entry / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1024


def _static(settings: Settings) -> list[float]:
    paths = json.loads((SITE / "manifest.json").read_text())["indexable"]
    fetcher = Fetcher(settings)
    times = []
    with FixtureSite(root=SITE) as site:
        for path in paths * 3:
            started = time.perf_counter()
            page = fetcher.fetch(site.url(path))
            extracted = extract(page)
            rendered = needs_render(page.body, extracted, settings.render_min_text_chars)
            times.append(time.perf_counter() - started)
            assert not rendered, f"{path} of the static fixture site would be rendered"
    fetcher.close()
    return times


def _rendered(settings: Settings, work: Path) -> tuple[float, list[float], list[float], float]:
    """(launch seconds, seconds per rendered page, PSS after each page, PSS once started)."""
    script = pack_docsify(work)
    (work / "other").mkdir()
    fetcher = Fetcher(settings)
    browser = Browser(settings, fetcher)
    times: list[float] = []
    memory: list[float] = []
    try:
        with FixtureSite(root=work / "other") as other:
            root = docsify_site(work / "site", script, other.base_url)
            with FixtureSite(root=root) as site:
                started = time.perf_counter()
                page = fetcher.fetch(site.url("/"))
                browser.render(page)
                launch = time.perf_counter() - started
                started_pss = _pss_mb(browser)
                for i in range(RENDERS):
                    url = site.url("/") + ROUTES[i % len(ROUTES)]
                    started = time.perf_counter()
                    page = fetcher.fetch(url)
                    html = browser.render(page)
                    text = extract(FetchedPage(url, url, 200, "text/html", html, "utf-8")).text
                    times.append(time.perf_counter() - started)
                    memory.append(_pss_mb(browser))
                    assert text, f"{url} rendered no text"
                assert other.requests == [], "the page's request to another host left the browser"
    finally:
        browser.close()
        fetcher.close()
    return launch, times, memory, started_pss


def _auto_rule(settings: Settings) -> tuple[int, int, list[str]]:
    pages = sorted(p for p in DEBIAN_DOCS.rglob("*.html") if p.is_file() and p.stat().st_size < 5_000_000)
    flagged = []
    for path in pages:
        body = path.read_bytes()
        try:
            extracted = extract(
                FetchedPage("http://h/x.html", "http://h/x.html", 200, "text/html", body, None)
            )
        except Exception:  # noqa: BLE001 - a page extraction refuses is not rendered either
            continue
        if needs_render(body, extracted, settings.render_min_text_chars):
            flagged.append(str(path))
    return len(flagged), len(pages), flagged


def run(plots: Path) -> tuple[str, str]:
    if find_chromium() is None:
        raise SystemExit("bench.render needs Chromium: apt-get install chromium")
    settings = Settings(_env_file=None, allow_private_networks=True, embedder="none")
    static = _static(settings)
    with tempfile.TemporaryDirectory(prefix="ragcord-bench-render-") as folder:
        launch, rendered, memory, started_pss = _rendered(settings, Path(folder))
    flagged, total, examples = _auto_rule(settings)

    static_ms = statistics.median(static) * 1000
    render_ms = statistics.median(rendered) * 1000
    p90_ms = sorted(rendered)[int(len(rendered) * 0.9)] * 1000
    ratio = render_ms / static_ms
    peak = max(memory)
    end = memory[-1]

    plots.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.hist([t * 1000 for t in rendered], bins=20, color="#4878cf")
    left.axvline(static_ms, color="#d65f5f", linestyle="--", label=f"static page, median {static_ms:.0f} ms")
    left.set_xlabel("ms per rendered Docsify page (fetch + render + extract)")
    left.set_ylabel("pages")
    left.legend(fontsize=8)
    right.plot(range(1, len(memory) + 1), memory, marker=".", color="#6acc65")
    right.axhline(started_pss, color="grey", linestyle=":", label="once started")
    right.set_xlabel("pages rendered")
    right.set_ylabel("browser PSS (MB)")
    right.set_ylim(bottom=0)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plots / "render.png", dpi=110)
    plt.close(fig)

    today = datetime.date.today().isoformat()
    markdown = f"""## Pages rendered by JavaScript

{today}, `python -m bench.render` (Chromium {_version()}, docsify 4.13.1 on loopback, one browser reused).

| page | pages | median | p90 |
|---|---|---|---|
| static fixture page: fetch, RENDER_AUTO's decision, extraction | {len(static)} | {static_ms:.1f} ms | |
| Docsify page: fetch, render, extraction | {len(rendered)} | {render_ms:.0f} ms | {p90_ms:.0f} ms |
| **rendered / static** | | **{ratio:.0f}x** | |

The browser's launch, with the first page: {launch * 1000:.0f} ms. Browser memory (PSS over its processes):
{started_pss:.0f} MB once started, at most {peak:.0f} MB after a page, {end:.0f} MB at the end (one browser
per worker process, only on a worker that met a page needing it).
RENDER_AUTO's rule over the HTML pages of Debian's doc packages here: **{flagged} of {total}** would be
rendered{": " + ", ".join(examples[:3]) if examples else ""}.

![render times and browser memory](bench/render.png)

A rendered page costs a navigation, its scripts and a wait for the network to go quiet (0.5 s after the load
event, then until its text stops changing; up to 2 s when it shows almost none), so rendering is for pages
that need it: a static site never starts a browser.
"""
    line = (
        f"render: pages={len(rendered)} median_ms={render_ms:.0f} p90_ms={p90_ms:.0f} "
        f"static_ms={static_ms:.1f} ratio={ratio:.0f} launch_ms={launch * 1000:.0f} "
        f"pss_mb={started_pss:.0f}/{peak:.0f} auto_static={flagged}/{total}"
    )
    return markdown, line


def _version() -> str:
    import subprocess

    executable = find_chromium()
    if executable is None:
        return "?"
    done = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=30)
    words = done.stdout.split()
    return words[1] if len(words) > 1 else "?"


if __name__ == "__main__":
    command_line("python -m bench.render", __doc__, run)
