"""What fits a memory budget: for each learner, backbone and image size, the largest support
set that full back-propagation can train on, and the largest h that LITE can back-propagate
(Bronskill et al., "Memory Efficient Meta-Learning with Large Images", NeurIPS 2021).

Each configuration's cost is measured once (:func:`litemeta.training.memory_cost.measure_cost`:
two probe steps, the saved-tensor bytes extrapolated linearly) and planned for every budget
with the same arithmetic as ``training.lite.h: auto``. The saved bytes are deterministic, so
the table holds on any device for the precision it names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from litemeta.device import place_on_device
from litemeta.evaluation import markdown_table
from litemeta.learners import build_learner
from litemeta.precision import Precision
from litemeta.training.memory_cost import ModelCost, measure_cost, task_image_bytes
from litemeta.training.memory_plan import (
    GIB,
    BudgetTooSmall,
    check_plan,
    largest_fitting,
    plan_training,
)

from .report import Row, write_csv
from .step import synthetic_task

__all__ = [
    "FIT_BACKBONES",
    "FIT_LEARNERS",
    "FIT_SIZES",
    "FitGrid",
    "assumptions",
    "check_rows",
    "fit_rows",
    "run_fit",
    "run_fit_check",
]

FIT_LEARNERS = ("protonets", "cnaps", "simple_cnaps")
FIT_BACKBONES = ("efficientnet_lite0", "efficientnet_b0", "resnet18")
FIT_SIZES = (84, 224)
MIB = 2**20


@dataclass(frozen=True)
class FitGrid:
    """The configurations and budgets (GiB) of ``litemeta bench fit``; ``way`` classes in
    the probe task, query batches of ``query_batch_size``, at ``precision``."""

    budgets: Sequence[float]
    learners: Sequence[str] = FIT_LEARNERS
    backbones: Sequence[str] = FIT_BACKBONES
    sizes: Sequence[int] = FIT_SIZES
    way: int = 10
    query_batch_size: int = 10
    precision: Precision = "fp32"
    device: str = "cpu"


def _budget_columns(cost: ModelCost, budget: float, query_batch_size: int) -> Row:
    limit = int(budget * GIB)
    full = largest_fitting(lambda n: cost.training_peak(n + query_batch_size) <= limit)
    try:
        h: int | str = plan_training(cost, limit, query_batch_size=query_batch_size).h
    except BudgetTooSmall:
        h = "does not fit"
    return {
        f"N, full back-prop, {budget:g} GiB": full or "does not fit",
        f"h, LITE, {budget:g} GiB": h,
    }


def _measured(grid: FitGrid, learner_name: str, backbone: str, size: int):
    torch.manual_seed(0)
    learner = build_learner(learner_name, backbone, size, pretrained=False)
    learner = place_on_device(learner, torch.device(grid.device))
    cost = measure_cost(learner, image_size=size, way=grid.way, precision=grid.precision)
    return learner, cost


def fit_rows(grid: FitGrid) -> list[Row]:
    """One row per learner, backbone and image size: the measured cost per image and the
    largest N (full back-propagation) and h (LITE) for each budget."""
    rows = []
    for learner_name in grid.learners:
        for backbone in grid.backbones:
            for size in grid.sizes:
                _, cost = _measured(grid, learner_name, backbone, size)
                row: Row = {
                    "learner": learner_name,
                    "backbone": backbone,
                    "px": size,
                    "precision": cost.precision,
                    "saved MiB / image": cost.saved.slope / MIB,
                    "working MiB / image": cost.working.slope / MIB,
                    "fixed MiB": cost.training_peak(0) / MIB,
                }
                for budget in grid.budgets:
                    row.update(_budget_columns(cost, budget, grid.query_batch_size))
                rows.append(row)
    return rows


def assumptions(grid: FitGrid) -> list[str]:
    """What the table counts and assumes, one note per line."""
    kept = (
        "bf16 autocast; parameters, gradients and Adam's moments in float32"
        if grid.precision == "bf16"
        else "float32 throughout"
    )
    return [
        f"- Precision {grid.precision} ({kept}); "
        f"{grid.way}-way tasks, query batches of {grid.query_batch_size}; backbones with "
        "random weights (the weights do not change the bytes).",
        "- Counted: parameters and buffers, the trainable parameters' gradients and Adam's two "
        'moments ("fixed", with the task\'s graph), the bytes autograd saves for backward '
        '("saved", measured with the saved-tensor meter on 1 and 2 images and extrapolated '
        'linearly) and the largest layer\'s inputs plus outputs ("working").',
        "- Full back-propagation holds all N support images and one query batch with autograd; "
        "LITE holds h drawn images (recomputed in one chunk of h, after the queries) or one "
        "query batch of at most h images, so N itself is limited only by the task's images "
        "(N x 3 x px^2 bytes, uint8), which the table does not count.",
        "- Not counted: the framework's own memory (CUDA context, cuDNN workspaces; the "
        "Python/torch baseline on a CPU) and the allocator's caching: rent a card with some "
        "headroom, or give training.memory_budget a margin below the card's memory.",
    ]


def run_fit(grid: FitGrid, output: Path) -> str:
    """Measure and plan ``grid``; write ``fit.csv`` and ``fit.md`` into ``output``; return the
    markdown (title, table, assumptions)."""
    rows = fit_rows(grid)
    budgets = ", ".join(f"{b:g}" for b in grid.budgets)
    text = (
        f"What fits a budget of {budgets} GiB: the largest support set N with full "
        f"back-propagation and the largest h with LITE, per learner, backbone and image size."
        "\n\n" + markdown_table(rows) + "\n" + "\n".join(assumptions(grid)) + "\n"
    )
    output.mkdir(parents=True, exist_ok=True)
    write_csv(rows, output / "fit.csv")
    (output / "fit.md").write_text(text)
    return text


def check_rows(grid: FitGrid) -> list[Row]:
    """For each configuration and budget: plan ``h: auto`` as training does, then run one
    real step at the plan's sizes (a task of ``grid.way`` classes holding more than h support
    images, two queries per class) and one Adam step, metered
    (:func:`litemeta.training.memory_plan.check_plan`): the measured peak against the plan
    and the budget."""
    rows = []
    for learner_name in grid.learners:
        for backbone in grid.backbones:
            for size in grid.sizes:
                learner, cost = _measured(grid, learner_name, backbone, size)
                for budget in grid.budgets:
                    limit = int(budget * GIB)
                    qb = grid.query_batch_size
                    # More support images than h, so that LITE, not full back-propagation, runs.
                    shots = plan_training(cost, limit, query_batch_size=qb).h // grid.way + 1
                    task = synthetic_task(grid.way, grid.way * shots, 2, size)
                    task = task.to(torch.device(grid.device))
                    plan = plan_training(
                        cost,
                        limit,
                        query_batch_size=qb,
                        task_bytes=task_image_bytes(task),
                        support_size=grid.way * shots,
                    )
                    measured = check_plan(learner, plan, task, precision=grid.precision)
                    gpu = measured.gpu_peak_bytes
                    rows.append(
                        {
                            "learner": learner_name,
                            "backbone": backbone,
                            "px": size,
                            "precision": cost.precision,
                            "budget GiB": budget,
                            "h": plan.h,
                            "query batch": plan.query_batch_size,
                            "N": task.support_images.shape[0],
                            "planned MiB": plan.peak_bytes / MIB,
                            "measured MiB": measured.accounted_bytes / MIB,
                            "saved, planned MiB": cost.saved(plan.h) / MIB,
                            "saved, measured MiB": measured.saved_bytes / MIB,
                            "unused %": 100 * (1 - measured.accounted_bytes / limit),
                            "GPU max allocated MiB": None if gpu is None else gpu / MIB,
                        }
                    )
    return rows


def run_fit_check(grid: FitGrid, output: Path) -> str:
    """:func:`check_rows` as ``fit-check.csv`` and ``fit-check.md`` in ``output``; returns
    the markdown."""
    rows = check_rows(grid)
    text = (
        "h: auto under each budget: the plan, and one real step at its sizes, measured "
        "(state after an Adam step + the task's images + the saved-tensor meter's peak + the "
        "largest layer's inputs and outputs).\n\n" + markdown_table(rows)
    )
    output.mkdir(parents=True, exist_ok=True)
    write_csv(rows, output / "fit-check.csv")
    (output / "fit-check.md").write_text(text)
    return text
