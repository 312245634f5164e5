"""Install the matrix's doc packages when their sites are missing: `python -m tests.realsites.install`."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable

from tests.realsites.catalog import SITES, Site

log = logging.getLogger(__name__)
APT_TIMEOUT_SECONDS = 900


class CannotInstall(Exception):
    """The packages are missing and this machine cannot install them (no apt, not root, or apt failed)."""


def missing(sites: Iterable[Site]) -> list[Site]:
    """The sites whose root is not on disk."""
    return [site for site in sites if site.root() is None]


def install(sites: Iterable[Site]) -> list[str]:
    """apt-get install the packages of the sites that are missing; returns the packages installed."""
    absent = missing(sites)
    if not absent:
        return []
    packages = sorted({p for site in absent for p in site.packages})
    if shutil.which("apt-get") is None:
        raise CannotInstall(f"no apt-get on this machine to install {' '.join(packages)}")
    sudo = _sudo()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in ([*sudo, "apt-get", "update", "-qq"], [*sudo, "apt-get", "install", "-y", "-qq", *packages]):
        log.info("running %s", " ".join(args))
        result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_SECONDS)
        if result.returncode != 0:
            raise CannotInstall(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr[-2000:]}")
    still = missing(absent)
    if still:
        names = ", ".join(f"{s.name} (no {s.seed} under {' or '.join(s.roots)})" for s in still)
        raise CannotInstall(f"installed {' '.join(packages)} but still missing: {names}")
    return packages


def _sudo() -> list[str]:
    """[] as root; sudo where it needs no password (GitHub's runners); else CannotInstall."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n", "-E"]
    raise CannotInstall("not root and no password-less sudo: run `sudo python -m tests.realsites.install`")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        installed = install(SITES)
    except CannotInstall as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"installed: {' '.join(installed)}" if installed else "every site is already installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
