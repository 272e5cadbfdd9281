"""The memory benchmark: `litemeta bench memory` writes its CSV, table and plot."""

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
