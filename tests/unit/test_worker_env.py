"""The environment `ragcord worker` gives Dramatiq: how soon idle consumers poll, how much they prefetch."""

from __future__ import annotations

from cli.supervise import worker_env
from ragcord.settings import Settings


def test_dramatiq_polls_often_and_prefetches_only_what_its_threads_can_run(monkeypatch):
    monkeypatch.delenv("dramatiq_worker_timeout", raising=False)
    monkeypatch.delenv("dramatiq_queue_prefetch", raising=False)
    settings = Settings(_env_file=None, worker_threads=3, worker_idle_timeout_ms=40, worker_metrics_port=0)

    env = worker_env(settings)

    assert env["dramatiq_worker_timeout"] == "40"
    assert env["dramatiq_queue_prefetch"] == "3"


def test_an_operator_s_own_dramatiq_environment_wins(monkeypatch):
    monkeypatch.setenv("dramatiq_queue_prefetch", "1")
    env = worker_env(Settings(_env_file=None, worker_metrics_port=0))
    assert env["dramatiq_queue_prefetch"] == "1"
