"""Prerequisites of the JavaScript rendering tests: Debian's chromium (installed when missing) and docsify
(`npm pack`ed into a temporary folder). Where either cannot be had the test skips, never under CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile

import pytest

from tests.realsites.install import CannotInstall, _sudo
from workers.render import find_chromium

CI = bool(os.environ.get("CI"))
DOCSIFY_VERSION = "4.13.1"


def unavailable(reason: str) -> None:
    """Skip locally; under CI a missing prerequisite is a failure."""
    if CI:
        pytest.fail(f"{reason} (CI is set: this test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, apt-get installed when missing (as tests/realsites/install.py installs)."""
    found = find_chromium()
    if found is None:
        try:
            sudo = _sudo()
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for args in (
                [*sudo, "apt-get", "update", "-qq"],
                [*sudo, "apt-get", "install", "-y", "-qq", "chromium"],
            ):
                done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
                if done.returncode != 0:
                    raise CannotInstall(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-500:]}")
        except (CannotInstall, OSError, subprocess.TimeoutExpired) as exc:
            unavailable(f"Debian's chromium is not installed and cannot be installed here: {exc}")
        found = find_chromium()
        if found is None:
            unavailable("apt-get installed chromium but no chromium is on PATH")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def docsify_js(tmp_path_factory) -> bytes:
    """docsify's lib/docsify.min.js, from `npm pack docsify@4.13.1` (nothing of it is committed)."""
    npm = shutil.which("npm")
    if npm is None:
        unavailable("npm is not installed: docsify cannot be fetched")
    folder = tmp_path_factory.mktemp("docsify")
    done = subprocess.run(
        [npm, "pack", f"docsify@{DOCSIFY_VERSION}", "--silent"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    tarball = folder / f"docsify-{DOCSIFY_VERSION}.tgz"
    if done.returncode != 0 or not tarball.is_file():
        unavailable(f"npm pack docsify@{DOCSIFY_VERSION} failed: {done.stderr[-500:]}")
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("package/lib/docsify.min.js")
        assert member is not None
        return member.read()
