"""The speed benchmark's report: each step's time over the inference pass's, against the
LITE target, in a table, a CSV file and a plot."""

from __future__ import annotations

import pytest

import litemeta.bench.speed as speed
from litemeta.bench.step import StepConfig
from litemeta.bench.sweep import Grid


def _row(support: int, mode: str, seconds: float | None) -> dict:
    status = "ok" if seconds is not None else "out of memory"
    row = {"learner": "protonets", "image_size": 32, "support": support, "mode": mode}
    return {**row, "status": status, **({"seconds": seconds} if seconds else {})}


def test_the_benchmark_times_the_grid_and_reports_ratios_to_inference(monkeypatch, tmp_path):
    measured = [
        _row(10, "inference", 0.5),
        _row(20, "inference", 1.0),
        _row(10, "lite-8", 0.6),
        _row(20, "lite-8", 1.5),
        _row(20, "backprop", None),
    ]
    asked = []

    def run_grid(configs, *, repeats, progress, description):
        asked.append(([(c.mode, c.support) for c in configs], repeats, description))
        return [dict(row) for row in measured]

    monkeypatch.setattr(speed, "run_grid", run_grid)
    template = StepConfig("protonets", 32, 10, "inference", way=2, threads=1)
    grid = Grid(["protonets"], [32], [20, 10], ["inference", "lite-8"], template)
    table = speed.run_speed_benchmark(grid, tmp_path, repeats=5, progress=False)
    assert asked == [
        ([("inference", 10), ("inference", 20), ("lite-8", 10), ("lite-8", 20)], 5, "speed")
    ]
    assert table.startswith(
        "Seconds per meta-training step (median of 5 after one warm-up; torch threads per "
        "process: 1).\n"
    )
    assert "| protonets | 32 | 20 | lite-8 | ok | 1.5 | 1.5 |" in table
    assert "| protonets | 32 | 10 | lite-8 | ok | 0.6 | 1.2 |" in table
    assert "| protonets | 32 | 20 | backprop | out of memory |  |  |" in table
    assert table.endswith(
        "- protonets, 32 px, N = 20 (the targets are stated at 224 px, N = 1000): LITE h = 8 "
        "step / inference pass 1.50x (not met), target <= 1.3x\n"
    )
    assert (tmp_path / "speed.md").read_text() == table
    lines = (tmp_path / "speed.csv").read_text().splitlines()
    assert lines[0].endswith("seconds_vs_inference") and len(lines) == 6
    assert (tmp_path / "speed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("seconds", "verdict"), [(2.4, "1.20x (met)"), (2.8, "1.40x (not met)")])
def test_the_target_is_met_at_most_1_3_times_inference(seconds, verdict):
    rows = [
        {"learner": "simple_cnaps", "image_size": 224, "support": 1000, "mode": "inference"},
        {"learner": "simple_cnaps", "image_size": 224, "support": 1000, "mode": "lite-8"},
    ]
    rows[0]["seconds_vs_inference"], rows[1]["seconds_vs_inference"] = 1.0, seconds / 2.0
    assert speed.speed_targets(rows) == [
        f"- simple_cnaps, 224 px, N = 1000: LITE h = 8 step / inference pass {verdict}, "
        "target <= 1.3x"
    ]
