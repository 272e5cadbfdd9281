"""The personalisation benchmark: `litemeta bench personalise` writes its CSV, table and
plot."""

import pytest
import torch

from litemeta.bench.personalise import personalise_learners, run_personalise_benchmark
from litemeta.bench.real_tasks import emoji_test_tasks
from litemeta.cli import main
from litemeta.learners import LEARNERS, build_learner

from .helpers import TINY_EMOJI_TASK, TINY_MODEL, written_outputs


def test_bench_personalise_writes_csv_markdown_and_plot(tmp_path):
    argv = ["bench", "personalise", *TINY_MODEL, *TINY_EMOJI_TASK, "--out", str(tmp_path)]
    assert main([*argv, "--learners", "protonets", "finetuner", "--tasks", "1"]) == 0
    rows, _ = written_outputs(tmp_path, "personalise")
    assert [r["learner"] for r in rows] == ["protonets", "finetuner"]
    assert int(float(rows[0]["task_parameters"])) == 2 * 512  # two prototypes of resnet18
    assert int(float(rows[1]["task_parameters"])) == 2 * 512 + 2  # a linear head


def test_meta_learners_come_before_the_baselines():
    names = personalise_learners()
    assert sorted(names) == sorted(LEARNERS)
    trainable = [LEARNERS[name].meta_trainable for name in names]
    assert trainable == sorted(trainable, reverse=True)  # all True, then all False
    assert names.index("finetuner") > names.index("protonets")


def test_the_rows_hold_the_accuracy_and_cost_of_each_learner(tmp_path):
    tasks = emoji_test_tasks(2, way=3, shot=2, queries=2, image_size=32, seed=4)
    torch.manual_seed(0)
    table = run_personalise_benchmark(
        ["protonets"], tasks, tmp_path, image_size=32, backbone="resnet18", pretrained=False
    )
    torch.manual_seed(0)  # the same random weights as the benchmark's learner
    learner = build_learner("protonets", "resnet18", 32, pretrained=False).eval()
    accuracies = []
    with torch.no_grad():
        for task in tasks:
            classifier = learner.adapt(task.support_images, task.support_labels)
            right = classifier(task.query_images).argmax(1) == task.query_labels
            accuracies.append(right.double().mean().item())
    [row], _ = written_outputs(tmp_path, "personalise")
    assert float(row["accuracy"]) == pytest.approx(sum(accuracies) / 2)
    assert (row["learner"], row["tasks"], float(row["support"])) == ("protonets", "2", 6.0)
    assert float(row["task_parameters"]) == 3 * 512  # three prototypes of resnet18 features
    accuracy = f"{100 * float(row['accuracy']):.1f} ± {100 * float(row['accuracy_ci95']):.1f}"
    assert "| protonets | 2 |" in table and accuracy in table
    assert table.startswith("Personalisation on 2 emoji test tasks (3-way, 6 support and 6 query")
