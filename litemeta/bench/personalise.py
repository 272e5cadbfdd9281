"""The cost of personalising to a new task against the accuracy it buys (Bronskill et al.,
"Memory Efficient Meta-Learning with Large Images", NeurIPS 2021, Table 2): meta-learners
adapt in one forward pass, fine-tuning takes gradient steps.

Every learner sees the same test tasks of the built-in emoji set. Time, MACs and the
numbers learned per task come from :func:`litemeta.learners.cost.measure_adaptation_cost`
(via ``learner.adaptation_cost``), accuracy from :func:`litemeta.evaluation.evaluate`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from litemeta.backbones import DEFAULT_BACKBONE
from litemeta.evaluation import evaluate, markdown_table
from litemeta.learners import LEARNERS, build_learner
from litemeta.tasks import Task

from .report import Row, save_figure, write_outputs

__all__ = [
    "personalise_learners",
    "plot_personalise",
    "run_personalise_benchmark",
]


def personalise_learners() -> list[str]:
    """Every registered learner by name: the meta-learners, then the baselines with nothing
    to meta-train."""
    return sorted(LEARNERS, key=lambda name: (not LEARNERS[name].meta_trainable, name))


def _table_row(row: Row) -> Row:
    return {
        "learner": row["learner"],
        "tasks": row["tasks"],
        "seconds to personalise": row["seconds"],
        "GMACs to personalise": row["macs"] / 1e9,
        "numbers learned per task": row["task_parameters"],
        "accuracy (%)": f"{100 * row['accuracy']:.1f} ± {100 * row['accuracy_ci95']:.1f}",
    }


def plot_personalise(rows: Sequence[Row], path: Path) -> Path:
    """Accuracy (with 95% CI), MACs and seconds to personalise, one bar per learner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["learner"] for r in rows]
    figure, (accuracy, macs, seconds) = plt.subplots(1, 3, figsize=(14, 4))
    accuracy.bar(
        names,
        [100 * r["accuracy"] for r in rows],
        yerr=[100 * r["accuracy_ci95"] for r in rows],
        capsize=4,
    )
    accuracy.set_ylabel("accuracy (%), 95% CI")
    macs.bar(names, [r["macs"] / 1e9 for r in rows])
    macs.set_ylabel("GMACs to personalise (log)")
    macs.set_yscale("log")
    seconds.bar(names, [r["seconds"] for r in rows])
    seconds.set_ylabel("seconds to personalise")
    for axis in (accuracy, macs, seconds):
        axis.tick_params(axis="x", labelrotation=20)
    return save_figure(figure, path)


def run_personalise_benchmark(
    learners: Sequence[str],
    tasks: Sequence[Task],
    output: Path,
    *,
    image_size: int,
    backbone: str = DEFAULT_BACKBONE,
    pretrained: bool = True,
    progress: bool = True,
) -> str:
    """Cost and accuracy of each learner, once, as built (no meta-training) on ``tasks``; write
    ``personalise.csv/.md/.png`` into ``output`` and return the table."""
    learners = list(dict.fromkeys(learners))
    rows: list[Row] = []
    bar = tqdm(total=len(learners) * len(tasks), desc="personalise", disable=not progress)
    for name in learners:
        torch.manual_seed(0)  # each learner's random initialisation, whatever the order
        learner = build_learner(name, backbone, image_size, pretrained=pretrained).eval()
        costs = []
        for task in tasks:
            costs.append(learner.adaptation_cost(task.support_images, task.support_labels))
            bar.update()
        result = evaluate(learner, tasks, progress=False)
        rows.append(
            {
                "learner": name,
                "tasks": len(tasks),
                "support": statistics.mean(c.support_size for c in costs),
                "seconds": statistics.median(c.seconds for c in costs),
                "macs": statistics.mean(c.macs for c in costs),
                "task_parameters": statistics.mean(c.task_parameters for c in costs),
                "accuracy": result.accuracy.mean,
                "accuracy_ci95": result.accuracy.ci95,
            }
        )
    bar.close()
    task = tasks[0]
    table = (
        f"Personalisation on {len(tasks)} emoji test tasks ({task.way}-way, "
        f"{task.support_labels.numel()} support and {task.query_labels.numel()} query images, "
        f"{image_size} px); learners as built, not meta-trained; seconds are the median over "
        "tasks, MACs and numbers learned the mean.\n\n"
        + markdown_table([_table_row(r) for r in rows])
    )
    write_outputs(rows, output, "personalise", table, lambda path: plot_personalise(rows, path))
    return table
