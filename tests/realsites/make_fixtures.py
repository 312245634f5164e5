"""Copy a few pages of each generator from the installed doc packages into tests/fixtures/generators/.

Run `python -m tests.realsites.make_fixtures` after a package update; it rewrites the pages and README.
Pages keep their path under the site root, so their relative links still point at each other.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.realsites.catalog import SITES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "generators"
MAX_PAGE_BYTES = 150_000


@dataclass(frozen=True)
class Pick:
    generator: str  # the fixture directory
    site: str  # the catalog entry it comes from
    pages: tuple[str, ...]
    cut_before: bytes = b""  # a trimmed page ends just before the first match of this, closed properly
    closing: bytes = b""


PICKS = (
    Pick("sphinx-python", "sphinx-python", ("library/functools.html", "tutorial/introduction.html")),
    Pick("sphinx-flask", "sphinx-flask", ("quickstart.html", "index.html")),
    Pick("sphinx-doc", "sphinx-doc", ("usage/quickstart.html", "index.html")),
    Pick("sphinx-cmake", "sphinx-cmake", ("command/add_library.html", "index.html")),
    Pick("docbook-debian-reference", "docbook-debian-reference", ("ch03.en.html", "apa.en.html")),
    Pick("gtk-doc-glib", "gtk-doc-glib", ("glib-Arrays.html", "glib-Error-Reporting.html")),
    Pick(
        "doxygen-sdl2",
        "doxygen-sdl2",
        (
            "pages.html",
            "d8/daa/md__r_e_a_d_m_e_cmake.html",
            "d0/d2c/struct_s_d_l___message_box_data.html",
            "d0/d2b/_s_d_l__endian_8h.html",
        ),
    ),
    # The first three chapters and the start of the fourth; the open chapter <div> is closed.
    Pick(
        "texinfo-bash",
        "texinfo-bash",
        ("bashref.html",),
        cut_before=b'<div class="section" id="Shell-Functions">',
        closing=b"</div>\n\n</body>\n</html>\n",
    ),
    # Go's page has no <head>, <body> or closing tags: cut between two sections, nothing to close.
    Pick("go-spec", "go-spec", ("go_spec.html",), cut_before=b'<h2 id="Types">'),
)


def _version(package: str) -> str:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version}", package], capture_output=True, text=True
    )
    return result.stdout.strip() if result.returncode == 0 else f"{package} (version unknown)"


def _installed_package(name: str) -> str:
    """The concrete package behind a metapackage (python3-doc -> python3.11-doc), by the file's owner."""
    result = subprocess.run(["dpkg-query", "-S", name], capture_output=True, text=True)
    if result.returncode != 0:
        return ""
    return result.stdout.split(":", 1)[0].split(",")[0].strip()


def copy(pick: Pick) -> list[str]:
    site = SITES.by_name(pick.site)
    root = site.root()
    if root is None:
        raise SystemExit(f"{site.name} is not installed: python -m tests.realsites.install")
    target = FIXTURES / pick.generator
    shutil.rmtree(target, ignore_errors=True)
    rows = []
    for page in pick.pages:
        source = (root / page).resolve()
        data = source.read_bytes()
        note = ""
        if pick.cut_before:
            data = data[: data.index(pick.cut_before)] + pick.closing
            note = f"trimmed before `{pick.cut_before.decode()}`"
        if len(data) > MAX_PAGE_BYTES:
            raise SystemExit(f"{page} of {site.name} is {len(data)} bytes: pick another or trim it")
        (target / page).parent.mkdir(parents=True, exist_ok=True)
        (target / page).write_bytes(data)
        package = _installed_package(str(source)) or site.packages[0]
        rows.append(
            f"| {pick.generator} | `{page}` | {len(data) // 1024} KB | {_version(package)} "
            f"| `{source}` | /usr/share/doc/{package}/copyright | {note} |"
        )
    return rows


README_HEAD = """# Pages of real documentation sites, one directory per generator

Copied from Debian's documentation packages by `python -m tests.realsites.make_fixtures` (which rewrites
this file), for fast unit tests of the HTML extraction. Each page keeps its path under its site's root.
The end-to-end matrix over the whole sites is tests/e2e/test_real_sites.py (catalog: tests/realsites/).

These are free-software manuals shipped by Debian, each under its project's licence as stated in the
package's copyright file named below (in short: Python, PSF licence; Flask, BSD-3-clause; Sphinx,
BSD-2-clause; CMake, BSD-3-clause; debian-reference, GPL-2+; GLib, LGPL-2.1+; SDL, zlib; the Bash
manual, GFDL 1.3; Go, BSD-style "Go" licence). Trimmed pages are cut at a section boundary and
keep their document structure.

| generator | page | size | package version | copied from | licence | note |
|---|---|---|---|---|---|---|
"""


def main() -> int:
    rows = [row for pick in PICKS for row in copy(pick)]
    (FIXTURES / "README.md").write_text(README_HEAD + "\n".join(rows) + "\n")
    total = sum(f.stat().st_size for f in FIXTURES.rglob("*") if f.is_file())
    print(f"{len(rows)} pages, {total // 1024} KB in {FIXTURES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
