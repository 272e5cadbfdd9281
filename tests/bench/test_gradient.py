"""The gradient benchmark: `litemeta bench gradient` writes its CSV, table and plot."""

import pytest

from litemeta.cli import main

from .helpers import TINY_EMOJI_TASK, TINY_MODEL, written_outputs


def test_bench_gradient_writes_csv_markdown_and_plot(tmp_path):
    argv = ["bench", "gradient", *TINY_MODEL, *TINY_EMOJI_TASK, "--out", str(tmp_path)]
    assert main([*argv, "--learners", "protonets", "--h", "1", "--draws", "2"]) == 0
    rows, _ = written_outputs(tmp_path, "gradient")
    assert [(r["h"], r["variant"]) for r in rows][::3] == [
        ("1", "unbiased (ours)"),
        ("4", "unbiased (ours)"),
    ]
    # h = N is the exact gradient.
    assert float(rows[-1]["mean_cosine"]) == pytest.approx(1.0, abs=1e-4)
