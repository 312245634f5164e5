"""Processes give memory back: glibc's mmap threshold fixed and two arenas, in ragcord's own processes and in
the workers it starts (measured in ragcord/malloc.py's docstring)."""

from __future__ import annotations

import subprocess
import sys

from cli.supervise import worker_env
from ragcord import malloc
from ragcord.settings import Settings
from tests.conftest import ROOT


def test_the_workers_are_started_with_the_allocator_settings():
    env = worker_env(Settings(_env_file=None))

    assert env["MALLOC_MMAP_THRESHOLD_"] == "131072"
    assert env["MALLOC_ARENA_MAX"] == "2"


def test_an_operators_own_allocator_settings_win(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")

    assert worker_env(Settings(_env_file=None))["MALLOC_ARENA_MAX"] == "4"


def test_a_process_applies_them_to_itself_on_glibc():
    # In a fresh interpreter: mallopt changes the process it runs in.
    probe = "from ragcord.malloc import give_memory_back; print(give_memory_back())"
    run = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)

    assert run.stdout.strip() == "True"
    assert malloc.ENVIRONMENT == {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_ARENA_MAX": "2"}
