"""`litemeta bench ...` writes a CSV, a markdown table and a PNG plot for a tiny grid."""

import csv

import pytest
import torch

from litemeta.cli import main

TINY_MODEL = ["--backbone", "resnet18", "--no-pretrained"]
TINY_EMOJI_TASK = ["--size", "32", "--way", "2", "--shot", "2", "--queries", "1"]


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _outputs(directory, name):
    paths = [directory / f"{name}.{kind}" for kind in ("csv", "md", "png")]
    assert all(path.stat().st_size > 0 for path in paths)
    with paths[0].open() as handle:
        return list(csv.DictReader(handle)), paths[1].read_text()


def test_bench_memory_writes_csv_markdown_and_plot(tmp_path, capsys):
    argv = ["bench", "memory", *TINY_MODEL, "--out", str(tmp_path), "--device", "cpu"]
    argv += ["--learners", "protonets", "--sizes", "32", "--support", "4", "--way", "2"]
    argv += ["--queries-per-class", "1", "--query-batch-size", "1", "--chunk-size", "4"]
    argv += ["--modes", "inference", "lite-1", "--threads", "1"]
    assert main(argv) == 0
    rows, table = _outputs(tmp_path, "memory")
    assert [(r["mode"], r["status"]) for r in rows] == [("inference", "ok"), ("lite-1", "ok")]
    assert int(rows[0]["saved_bytes"]) == 0 < int(rows[1]["saved_bytes"])
    assert int(rows[0]["peak_bytes"]) > 0
    assert "| protonets | 32 | 4 | lite-1 | ok |" in table
    assert table in capsys.readouterr().out


def test_bench_gradient_writes_csv_markdown_and_plot(tmp_path):
    argv = ["bench", "gradient", *TINY_MODEL, *TINY_EMOJI_TASK, "--out", str(tmp_path)]
    assert main([*argv, "--learners", "protonets", "--h", "1", "--draws", "2"]) == 0
    rows, _ = _outputs(tmp_path, "gradient")
    assert [(r["h"], r["variant"]) for r in rows][::3] == [
        ("1", "unbiased (ours)"),
        ("4", "unbiased (ours)"),
    ]
    # h = N is the exact gradient.
    assert float(rows[-1]["mean_cosine"]) == pytest.approx(1.0, abs=1e-4)


def test_bench_personalise_writes_csv_markdown_and_plot(tmp_path):
    argv = ["bench", "personalise", *TINY_MODEL, *TINY_EMOJI_TASK, "--out", str(tmp_path)]
    assert main([*argv, "--learners", "protonets", "finetuner", "--tasks", "1"]) == 0
    rows, _ = _outputs(tmp_path, "personalise")
    assert [r["learner"] for r in rows] == ["protonets", "finetuner"]
    assert int(float(rows[0]["task_parameters"])) == 2 * 512  # two prototypes of resnet18
    assert int(float(rows[1]["task_parameters"])) == 2 * 512 + 2  # a linear head
