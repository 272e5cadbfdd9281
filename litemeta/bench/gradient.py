"""Bias and variance of LITE gradient estimates against the exact full-set gradient.

Compares, on one real task, the unbiased estimator of :mod:`litemeta.lite` with the two
published variants: no N/h scaling (the official LITE code) and the whole query loss
scaled by N/h (the ORBIT code).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional
from tqdm.auto import tqdm

from litemeta.backbones import DEFAULT_BACKBONE
from litemeta.evaluation import markdown_table
from litemeta.learners import build_learner
from litemeta.learners.backbone_learner import DEFAULT_CHUNK_SIZE
from litemeta.learners.base import FewShotLearner
from litemeta.lite import LitePass, LiteSettings, check_h
from litemeta.tasks import Task

from .report import Row, save_figure, write_outputs

VARIANTS = ("unbiased (ours)", "no N/h scaling", "query loss x N/h")


def _task_loss(learner: FewShotLearner, task: Task, lite: LitePass) -> Tensor:
    classifier = learner.adapt(task.support_images, task.support_labels, lite=lite)
    logits = classifier(task.query_images)
    return functional.cross_entropy(logits, task.query_labels) + classifier.regularizer


def _gradient(learner: FewShotLearner, task: Task, lite: LitePass) -> Tensor:
    params = [p for p in learner.parameters() if p.requires_grad]
    grads = torch.autograd.grad(_task_loss(learner, task, lite), params, allow_unused=True)
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).flatten()
            for g, p in zip(grads, params, strict=True)
        ]
    )


def _cosine(a: Tensor, b: Tensor) -> float:
    return float(functional.cosine_similarity(a.double(), b.double(), dim=0))


def _relative_error(estimate: Tensor, exact: Tensor) -> float:
    return float((estimate - exact).norm() / exact.norm())


def _summary(h: int, variant: str, draws: list[Tensor], exact: Tensor) -> Row:
    single_cos = torch.tensor([_cosine(g, exact) for g in draws])
    single_err = torch.tensor([_relative_error(g, exact) for g in draws])
    mean = torch.stack(draws).mean(0)
    return {
        "h": h,
        "variant": variant,
        "draws": len(draws),
        "single_cosine_mean": float(single_cos.mean()),
        "single_cosine_std": float(single_cos.std()) if len(draws) > 1 else 0.0,
        "single_relative_error": float(single_err.mean()),
        "mean_cosine": _cosine(mean, exact),
        "mean_relative_error": _relative_error(mean, exact),
    }


def gradient_fidelity(
    learner: FewShotLearner,
    task: Task,
    subset_sizes: Sequence[int],
    *,
    draws: int = 50,
    seed: int = 0,
) -> list[Row]:
    """Rows of cosine similarity and relative error for each ``h`` (from 1 to N, each
    once, in increasing order) and estimator variant.

    ``single_*`` columns describe individual draws (variance); ``mean_*`` columns describe
    the mean over ``draws`` draws, which converges to the exact gradient only for an
    unbiased estimator (bias).
    """
    num_support = task.support_images.shape[0]
    sizes = sorted(set(subset_sizes))
    for h in sizes:
        check_h(h, name="a subset size h", set_size=num_support)
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    exact = _gradient(learner, task, LitePass(LiteSettings(h=None)))
    rows: list[Row] = []
    for h in sizes:
        if h == num_support:
            rows += [_summary(num_support, variant, [exact], exact) for variant in VARIANTS]
            continue
        ours: list[Tensor] = []
        unscaled: list[Tensor] = []
        for draw in range(draws):
            # The same subset for both variants: two generators in the same state.
            for unbiased, target in ((True, ours), (False, unscaled)):
                generator = torch.Generator().manual_seed(seed * 1_000_003 + draw)
                settings = LiteSettings(h=h, unbiased_scaling=unbiased)
                target.append(_gradient(learner, task, LitePass(settings, generator)))
        query_scaled = [g * (num_support / h) for g in unscaled]
        for variant, estimates in zip(VARIANTS, (ours, unscaled, query_scaled), strict=True):
            rows.append(_summary(h, variant, estimates, exact))
    return rows


def _table_row(row: Row) -> Row:
    return {
        "learner": row["learner"],
        "h": row["h"],
        "variant": row["variant"],
        "draws": row["draws"],
        "cosine, one draw": f"{row['single_cosine_mean']:.3f} ± {row['single_cosine_std']:.3f}",
        "rel. error, one draw": row["single_relative_error"],
        "cosine of mean": row["mean_cosine"],
        "rel. error of mean": row["mean_relative_error"],
    }


def plot_fidelity(rows: Sequence[Row], path: Path) -> Path:
    """Per learner: cosine to the exact gradient against h, for single draws (solid, with
    one standard deviation) and for the mean over draws (dashed), one colour per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    learners = list(dict.fromkeys(r["learner"] for r in rows))
    figure, axes = plt.subplots(
        1, len(learners), figsize=(5.5 * len(learners), 4), squeeze=False, sharey=True
    )
    for axis, learner in zip(axes[0], learners, strict=True):
        for variant in VARIANTS:
            series = [r for r in rows if r["learner"] == learner and r["variant"] == variant]
            hs = [r["h"] for r in series]
            line = axis.errorbar(
                hs,
                [r["single_cosine_mean"] for r in series],
                yerr=[r["single_cosine_std"] for r in series],
                marker="o",
                capsize=3,
                label=f"{variant}: one draw",
            )
            axis.plot(
                hs,
                [r["mean_cosine"] for r in series],
                linestyle="--",
                marker="x",
                color=line[0].get_color(),
                label=f"{variant}: mean of {series[0]['draws']} draws",
            )
        axis.set_xscale("log")
        axis.set_title(learner)
        axis.set_xlabel("h (back-propagated support images)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    axes[0][0].set_ylabel("cosine similarity to the exact gradient")
    return save_figure(figure, path)


def run_gradient_benchmark(
    learners: Sequence[str],
    task: Task,
    subset_sizes: Sequence[int],
    output: Path,
    *,
    image_size: int,
    backbone: str = DEFAULT_BACKBONE,
    pretrained: bool = True,
    draws: int = 20,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
) -> str:
    """:func:`gradient_fidelity` of each learner, once (as built, not meta-trained) on ``task``;
    write ``gradient.csv/.md/.png`` into ``output`` and return the table."""
    rows: list[Row] = []
    for name in tqdm(dict.fromkeys(learners), desc="gradient", disable=not progress):
        learner = build_learner(
            name, backbone, image_size, pretrained=pretrained, chunk_size=chunk_size
        ).eval()
        fidelity = gradient_fidelity(learner, task, subset_sizes, draws=draws)
        rows += [{"learner": name, **row} for row in fidelity]
    support = task.support_labels.numel()
    table = (
        f"Gradient fidelity on one {task.way}-way task, N = {support} support and "
        f"{task.query_labels.numel()} query images.\n\n"
        + markdown_table([_table_row(r) for r in rows])
    )
    write_outputs(rows, output, "gradient", table, lambda path: plot_fidelity(rows, path))
    return table
