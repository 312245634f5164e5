"""Stage timing of worker pages (workers/stagetimes.py): off by default, exact counts when on."""

from __future__ import annotations

import json
import os

import pytest

from workers.stagetimes import StageTimes, timed


class _Store:
    def __init__(self) -> None:
        self.written: list[str] = []
        self.name = "store"

    def replace_page(self, url: str) -> str:
        self.written.append(url)
        return url

    def count(self) -> int:
        return len(self.written)


def test_only_the_named_methods_are_timed_and_everything_passes_through():
    times = StageTimes()
    store = timed(_Store(), times, "store", ("replace_page",))

    assert store.replace_page("a") == "a"
    assert store.replace_page("b") == "b"
    assert store.count() == 2
    assert store.name == "store"

    assert times.calls["store"] == 2
    assert times.wall["store"] >= 0
    assert set(times.calls) == {"store"}


def test_a_failing_call_is_timed_and_its_error_reaches_the_caller():
    times = StageTimes()

    with pytest.raises(ZeroDivisionError), times.stage("extract"):
        1 / 0  # noqa: B018

    assert times.calls["extract"] == 1


def test_totals_are_written_as_json_per_process(tmp_path):
    times = StageTimes(tmp_path)
    times.add("fetch", 0.25, 0.05)
    times.count_command("EVALSHA")
    times.page_done()  # the first page writes at once

    written = json.loads((tmp_path / f"stages-{os.getpid()}.json").read_text())
    assert written["messages"] == 1
    assert written["wall"] == {"fetch": 0.25}
    assert written["cpu"] == {"fetch": 0.05}
    assert written["redis_commands"] == {"EVALSHA": 1}
    assert not list(tmp_path.glob("*.tmp"))


def test_redis_commands_are_counted_by_name():
    sent = []

    class Client:
        def execute_command(self, *args, **options):
            sent.append(args)
            return "OK"

    client = Client()
    times = StageTimes()
    times.count_redis_commands(client)
    assert client.execute_command("HGET", "k", "f") == "OK"
    assert client.execute_command("EVALSHA", "abc", 0) == "OK"
    times.count_redis_commands(None)  # no client: nothing to count

    assert sent == [("HGET", "k", "f"), ("EVALSHA", "abc", 0)]
    assert times.redis_commands == {"HGET": 1, "EVALSHA": 1}
