"""`make bench`'s runner: each benchmark's section and line kept, the report put together, the trend shown."""

from __future__ import annotations

import sys
import types

import pytest

import bench.__main__ as runner


@pytest.fixture
def docs(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "DOCS", tmp_path)
    monkeypatch.setattr(runner, "PLOTS", tmp_path / "bench")
    monkeypatch.setattr(runner, "HISTORY", tmp_path / "bench" / "history.tsv")
    monkeypatch.setattr(runner, "BENCHMARKS", ("alpha", "beta"))
    monkeypatch.setattr(runner, "available", lambda: ["alpha", "beta"])
    runs = {"alpha": 0}

    def alpha(plots):
        runs["alpha"] += 1
        return f"## Alpha\n\nrun {runs['alpha']}\n", f"alpha: n={runs['alpha']}"

    def beta(plots):
        raise RuntimeError("beta broke")

    for name, fn in (("alpha", alpha), ("beta", beta)):
        monkeypatch.setitem(sys.modules, f"bench.{name}", types.SimpleNamespace(run=fn))
    return tmp_path


def test_a_run_writes_each_section_and_line_and_a_broken_benchmark_does_not_lose_the_others(docs, capsys):
    assert runner.main([]) == 1  # beta failed, and says so

    assert (docs / "bench" / "alpha.md").read_text() == "## Alpha\n\nrun 1\n"
    assert "alpha: n=1" in capsys.readouterr().out
    report = (docs / "benchmarks.md").read_text()
    assert report.startswith("# Benchmarks") and "## Alpha" in report


def test_only_reruns_some_and_the_report_keeps_the_previous_line_as_the_trend(docs):
    runner.main(["--only", "alpha"])
    runner.main(["--only", "alpha"])

    report = (docs / "benchmarks.md").read_text()
    assert "run 2" in report and "run 1" not in report
    trend = next(line for line in report.splitlines() if line.startswith("| alpha |"))
    assert "`alpha: n=2`" in trend and "`alpha: n=1`" in trend
    assert len((docs / "bench" / "history.tsv").read_text().splitlines()) == 2


def test_an_unknown_benchmark_is_refused_with_the_known_ones(docs, capsys):
    with pytest.raises(SystemExit):
        runner.main(["--only", "gamma"])
    assert "alpha, beta" in capsys.readouterr().err
