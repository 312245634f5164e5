"""numpy's BLAS runs one thread per call in ragcord's processes (why: ragcord/blas.py)."""

from __future__ import annotations

import subprocess
import sys

from ragcord.settings import Settings
from tests.conftest import ROOT

# In a fresh interpreter: the thread count is the process's own.
PROBE = """
import numpy
from threadpoolctl import threadpool_info
from ragcord import blas
print(blas.limit_threads({threads}))
print(next(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"))
"""


def probe(threads: int) -> list[str]:
    run = subprocess.run(
        [sys.executable, "-c", PROBE.format(threads=threads)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"OPENBLAS_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"},  # the library's own choice: two
    )
    return run.stdout.split()


def test_one_thread_per_blas_call_by_default():
    assert Settings(_env_file=None).blas_threads == 1


def test_the_process_sets_numpys_openblas_to_the_threads_asked_for():
    assert probe(1) == ["True", "1"]
    assert probe(3) == ["True", "3"]


def test_zero_leaves_the_librarys_own_choice():
    assert probe(0) == ["False", "2"]


def test_every_process_built_by_bootstrap_sets_them(monkeypatch, tmp_path):
    import redis

    from ragcord import bootstrap
    from ragcord.knowledge.embedders import NoEmbedder

    asked: list[int] = []
    monkeypatch.setattr(bootstrap.blas, "limit_threads", asked.append)
    settings = Settings(_env_file=None, data_dir=tmp_path, blas_threads=2)

    services = bootstrap.bootstrap(
        settings,
        redis_client=redis.Redis(),
        embedder=NoEmbedder(),
        store=object(),  # type: ignore[arg-type]
    )
    services.executors.shutdown()

    assert asked == [2]
