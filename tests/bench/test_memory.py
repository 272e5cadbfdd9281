"""The memory benchmark: `litemeta bench memory` writes its CSV, table and plot."""

import pytest

import litemeta.bench.memory as memory
from litemeta.bench.memory import memory_report, memory_targets
from litemeta.bench.sweep import DOES_NOT_FIT, MIB
from litemeta.cli import main

from .helpers import TINY_MODEL, written_outputs


def test_bench_memory_writes_csv_markdown_and_plot(tmp_path, capsys):
    argv = ["bench", "memory", *TINY_MODEL, "--out", str(tmp_path), "--device", "cpu"]
    argv += ["--learners", "protonets", "--sizes", "32", "--support", "4", "--way", "2"]
    argv += ["--queries-per-class", "1", "--query-batch-size", "1", "--chunk-size", "4"]
    argv += ["--modes", "inference", "lite-1", "--threads", "1"]
    assert main(argv) == 0
    rows, table = written_outputs(tmp_path, "memory")
    assert [(r["mode"], r["status"]) for r in rows] == [("inference", "ok"), ("lite-1", "ok")]
    assert int(rows[0]["saved_bytes"]) == 0 < int(rows[1]["saved_bytes"])
    assert int(rows[0]["peak_bytes"]) > 0
    assert "| protonets | 32 | 4 | lite-1 | ok |" in table
    assert table in capsys.readouterr().out


def test_bench_memory_runs_the_step_at_the_chosen_precision(tmp_path):
    argv = ["bench", "memory", *TINY_MODEL, "--device", "cpu", "--learners", "protonets"]
    argv += ["--sizes", "32", "--support", "2", "--way", "2", "--queries-per-class", "1"]
    argv += ["--modes", "lite-1", "--threads", "1"]
    saved = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main([*argv, "--precision", precision, "--out", str(out)]) == 0
        rows, table = written_outputs(out, "memory")
        assert rows[0]["precision"] == precision
        assert f"| protonets | 32 | 2 | lite-1 | {precision} | ok |" in table
        saved[precision] = int(rows[0]["saved_bytes"])
    # Under bf16 autocast the step also keeps the bf16 copies of the trained weights
    # (ResNet-18: 11.2M parameters, 22 MB), which float32 does not need.
    assert saved["bf16"] > 2 * 11_000_000 > saved["fp32"]


def _rows() -> list[dict]:
    """ProtoNets measured at the target point; Simple CNAPs on a smaller grid."""

    def row(learner, size, support, mode, peak=None, estimate=None):
        status = "ok" if peak is not None else DOES_NOT_FIT
        values = {"peak_bytes": peak, "estimated_peak_bytes": estimate}
        return {
            "learner": learner,
            "image_size": size,
            "support": support,
            "mode": mode,
            "status": status,
            **{k: v * MIB for k, v in values.items() if v is not None},
        }

    return [
        row("protonets", 224, 1000, "inference", peak=100),
        row("protonets", 224, 1000, "lite-8", peak=110),
        row("protonets", 224, 1000, "backprop", estimate=3000),
        row("simple_cnaps", 84, 50, "inference", peak=200),
        row("simple_cnaps", 84, 50, "lite-8", peak=300),
        row("simple_cnaps", 84, 50, "backprop", peak=3000),
    ]


def test_the_report_compares_each_peak_with_inference_against_the_targets(tmp_path):
    rows = _rows()
    table = memory_report(rows, tmp_path, on_gpu=False)
    assert [row["peak_vs_inference"] for row in rows] == pytest.approx([1, 1.1, 30, 1, 1.5, 15])
    assert table.startswith("Peak memory (process peak RSS) of one meta-training step.\n")
    assert "| protonets | 224 | 1000 | backprop | does not fit |  | 3,000 |  | 30 |" in table
    assert table.endswith(
        "- protonets, 224 px, N = 1000: LITE h = 8 peak / inference 1.10x (met), target <= "
        "1.25x; full back-propagation (estimated) 30.00x (met), target >= 20x\n"
        "- simple_cnaps, 84 px, N = 50 (the targets are stated at 224 px, N = 1000): LITE h = "
        "8 peak / inference 1.50x (not met), target <= 1.25x; full back-propagation 15.00x "
        "(not met), target >= 20x\n"
    )
    written, markdown = written_outputs(tmp_path, "memory")
    assert markdown == table
    assert [r["mode"] for r in written] == [r["mode"] for r in rows]
    assert (tmp_path / "memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_targets_say_not_measured_without_an_inference_row():
    rows = [r for r in _rows() if r["mode"] != "inference"]
    for row in rows:
        row["peak_vs_inference"] = None
    assert "peak / inference not measured" in memory_targets(rows)[0]


def _failing_grid(monkeypatch, statuses):
    """Make the memory benchmark's grid end in ``statuses`` at N = 2, 4, ... without running."""

    def run_grid(configs, **kwargs):
        rows = [
            {"learner": "protonets", "image_size": 32, "support": 2 * (i + 1), "mode": "lite-1"}
            for i in range(len(statuses))
        ]
        for row, status in zip(rows, statuses, strict=True):
            row["status"] = status
            if status == "error":
                row["error"] = "Traceback (most recent call last):\n  ...\nValueError: bad step\n"
            else:
                row.update(peak_bytes=MIB, saved_bytes=0)
        return rows

    monkeypatch.setattr(memory, "run_grid", run_grid)


ARGV = ["bench", "memory", *TINY_MODEL, "--device", "cpu", "--learners", "protonets"]
ARGV += ["--sizes", "32", "--support", "2", "--way", "2", "--modes", "lite-1"]


def test_failed_configurations_are_named_on_stderr_and_the_rest_reported(
    monkeypatch, tmp_path, capsys
):
    _failing_grid(monkeypatch, ["ok", "error", "crashed (exit code -11)"])
    assert main([*ARGV, "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-2:] == [
        "failed: protonets, 32 px, N = 4, lite-1: error: ValueError: bad step",
        "failed: protonets, 32 px, N = 6, lite-1: crashed (exit code -11)",
    ]
    assert "| protonets | 32 | 2 | lite-1 | ok |" in captured.out


def test_a_grid_where_every_configuration_failed_exits_1(monkeypatch, tmp_path, capsys):
    _failing_grid(monkeypatch, ["error", "error"])
    assert main([*ARGV, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("failed: protonets") == 2
    assert err.splitlines()[-1] == (
        f"litemeta: error: every configuration failed (reasons above, tracebacks in "
        f"{tmp_path / 'memory.csv'})"
    )
    rows, _ = written_outputs(tmp_path, "memory")
    assert [r["status"] for r in rows] == ["error", "error"]
