"""The personalisation benchmark: `litemeta bench personalise` writes its CSV, table and
plot."""

from litemeta.cli import main

from .helpers import TINY_EMOJI_TASK, TINY_MODEL, written_outputs


def test_bench_personalise_writes_csv_markdown_and_plot(tmp_path):
    argv = ["bench", "personalise", *TINY_MODEL, *TINY_EMOJI_TASK, "--out", str(tmp_path)]
    assert main([*argv, "--learners", "protonets", "finetuner", "--tasks", "1"]) == 0
    rows, _ = written_outputs(tmp_path, "personalise")
    assert [r["learner"] for r in rows] == ["protonets", "finetuner"]
    assert int(float(rows[0]["task_parameters"])) == 2 * 512  # two prototypes of resnet18
    assert int(float(rows[1]["task_parameters"])) == 2 * 512 + 2  # a linear head
