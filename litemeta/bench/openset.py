"""How well "none of these" works, on the built-in emoji set: recognisers are taught some
classes from three artists' drawings (support styles) and shown the four Fluent styles of
those classes (known) and of classes they were not taught (untaught).

Each task draws ``way + untaught`` classes of a split; the first ``way`` (a random choice)
are taught from their support-style images and calibrated from them alone
(:func:`litemeta.serve.quality.adapt_and_calibrate`); every class's query-style images are
then scored. Per task: the AUROC of the open-set score (known against untaught; the raw
cosine, whose ranking the familiarity keeps up to ties at 0 and 1; for comparison the cosine
with the background images' mean and top principal directions removed instead of the
within-class background, with only their mean removed and with no background, the largest
logit and the top calibrated probability), and at the calibrated threshold the share of
untaught images rejected, the share of known ones rejected, and the accuracy on known images
with and without rejection (a rejected known image counts as wrong). The int8 export is
measured against the float one on the first task: file sizes and top-1 agreement on the
first 100 query images.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from litemeta.data import FixedWaySampler, emoji_tasks
from litemeta.data.emoji import STYLES
from litemeta.evaluation import markdown_table
from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.serve.background import background_features
from litemeta.serve.calibration import (
    DEFAULT_THRESHOLD,
    Background,
    OpenSet,
    familiarity,
    open_set_scores,
)
from litemeta.serve.export import export_onnx, quantise
from litemeta.serve.quality import adapt_and_calibrate
from litemeta.tasks import Task

from .report import Row, write_csv

__all__ = ["auroc", "openset_tasks", "run_openset_benchmark"]

SUPPORT_STYLES = ("google", "twitter", "openmoji")
QUERY_STYLES = tuple(s for s in STYLES if s.startswith("fluent"))
AGREEMENT_QUERIES = 100
#: Principal directions of the comparison row (the score's background before).
PRINCIPAL = 10
#: The thresholds of the trade-off table, besides the one benchmarked.
SWEEP = (0.01, 0.02, 0.03, 0.04, 0.05, 0.1, 0.2, 0.3, 0.5)


def auroc(known: Sequence[float], unknown: Sequence[float]) -> float:
    """The probability that a known image scores higher than an untaught one (ties count
    half): the area under the ROC curve, by the Mann-Whitney statistic."""
    if not known or not unknown:
        raise ValueError("need at least one known and one untaught score")
    known_scores, unknown_scores = np.asarray(known)[:, None], np.asarray(unknown)[None, :]
    wins = (known_scores > unknown_scores).sum() + 0.5 * (known_scores == unknown_scores).sum()
    return float(wins / (known_scores.size * unknown_scores.size))


def openset_tasks(
    split: str, num_tasks: int, way: int, untaught: int, image_size: int, seed: int = 0
) -> list[Task]:
    """Tasks of ``way + untaught`` classes of an emoji split, support from
    :data:`SUPPORT_STYLES` (one image each), queries from :data:`QUERY_STYLES`."""
    sampler = FixedWaySampler(way + untaught, len(SUPPORT_STYLES), len(QUERY_STYLES))
    tasks = emoji_tasks(
        split,
        num_tasks=num_tasks,
        sampler=sampler,
        seed=seed,
        support_styles=list(SUPPORT_STYLES),
        query_styles=list(QUERY_STYLES),
        decode_size=image_size,
    )
    return list(tasks)


def _rejection(
    familiar: torch.Tensor, known: torch.Tensor, correct: torch.Tensor, threshold: float
) -> Row:
    """Shares rejected and accuracy with rejection at ``threshold``."""
    rejected = familiar < threshold
    return {
        "untaught_rejected": float(rejected[~known].double().mean()),
        "known_rejected": float(rejected[known].double().mean()),
        "accuracy_with_rejection": float((correct & ~rejected)[known].double().mean()),
    }


def principal_background(features: torch.Tensor, directions: int) -> Background:
    """The mean of ``features`` ``[n, d]`` and their top ``directions`` principal directions,
    removed whole ("all-but-the-top", Mu and Viswanath, ICLR 2018): the score's background
    before the within-class one, for comparison."""
    features = features.double()
    mean = features.mean(0)
    values, vectors = torch.linalg.eigh((features - mean).T @ (features - mean))
    top = vectors[:, values.argsort(descending=True)[:directions]].T
    return Background(mean.float(), top.float())


def _plainer_scores(
    features: torch.Tensor, open_set: OpenSet, principal: Background
) -> dict[str, torch.Tensor]:
    """The open-set score with the background's mean and top principal directions removed
    (``principal``), with its mean only (centred), and without any background (the plain
    cosine), for comparison."""
    mean, directions = open_set.background.mean, open_set.background.directions
    plainer = {
        "principal": principal,
        "centred": Background(mean, directions[:0]),
        "plain": Background(torch.zeros_like(mean), directions[:0]),
    }
    return {
        name: open_set_scores(features, open_set.centres, background)
        for name, background in plainer.items()
    }


def _task_row(
    learner: BackboneLearner, task: Task, way: int, threshold: float, principal: Background
) -> Row:
    device = next(learner.parameters()).device
    taught = task.support_labels < way
    classifier, open_set, _ = adapt_and_calibrate(
        learner, task.support_images[taught].to(device), task.support_labels[taught].to(device)
    )
    with torch.no_grad():
        features = classifier.embed(task.query_images.to(device)).double()
        logits = classifier.classify(features).double().cpu()
    raw = open_set.scores(features.cpu())
    familiar = familiarity(raw, torch.tensor(open_set.knots, dtype=torch.float64))
    largest = logits.max(-1).values
    known = task.query_labels < way
    correct = logits.argmax(-1) == task.query_labels
    probabilities = (logits / open_set.temperature).softmax(-1)
    sweep = {
        f"{key}@{level}": value
        for level in SWEEP
        for key, value in _rejection(familiar, known, correct, level).items()
    }
    return {
        "auroc": auroc(raw[known].tolist(), raw[~known].tolist()),
        **{
            f"auroc_{name}": auroc(scores[known].tolist(), scores[~known].tolist())
            for name, scores in _plainer_scores(features.cpu(), open_set, principal).items()
        },
        "auroc_logit": auroc(largest[known].tolist(), largest[~known].tolist()),
        "auroc_probability": auroc(
            probabilities.max(-1).values[known].tolist(),
            probabilities.max(-1).values[~known].tolist(),
        ),
        **_rejection(familiar, known, correct, threshold),
        "accuracy": float(correct[known].double().mean()),
        "temperature": open_set.temperature,
        **sweep,
    }


def _int8_row(learner: BackboneLearner, task: Task, way: int, queries: torch.Tensor) -> Row:
    """Sizes of the float and int8 exports of the task's recogniser and their top-1 and
    "none of these" agreement on ``queries``."""
    import onnxruntime

    device = next(learner.parameters()).device
    taught = task.support_labels < way
    classifier, open_set, _ = adapt_and_calibrate(
        learner, task.support_images[taught].to(device), task.support_labels[taught].to(device)
    )
    labels = [str(i) for i in range(way)]
    float_model = export_onnx(learner.backbone, classifier, labels, open_set)
    int8_model = quantise(float_model)
    answers = []
    for model in (float_model, int8_model):
        session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        probabilities, rejected, _ = session.run(
            ["probabilities", "none_of_these", "score"], {"image": queries.numpy()}
        )
        answers.append((probabilities.argmax(-1), rejected))
    (float_top, float_rejected), (int8_top, int8_rejected) = answers
    return {
        "float_mb": len(float_model) / 2**20,
        "int8_mb": len(int8_model) / 2**20,
        "top1_agreement": float((float_top == int8_top).mean()),
        "rejection_agreement": float((float_rejected == int8_rejected).mean()),
        "queries": int(queries.shape[0]),
    }


def _mean_ci(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, 1.96 * spread / len(values) ** 0.5


#: The summary's AUROC rows and rates, by their key in the per-task rows.
MEASURES = {
    "auroc": "AUROC, cosine to the nearest class mean, background removed (the score)",
    "auroc_principal": (
        f"AUROC, the same, mean and {PRINCIPAL} top principal directions removed instead"
    ),
    "auroc_centred": "AUROC, the same, centred on the background mean only",
    "auroc_plain": "AUROC, the same, no background",
    "auroc_logit": "AUROC, largest logit",
    "auroc_probability": "AUROC, top calibrated probability",
    "untaught_rejected": "untaught images rejected",
    "known_rejected": "known images rejected",
    "accuracy": "accuracy on known images, no rejection",
    "accuracy_with_rejection": "accuracy on known images, with rejection",
}


def _summary(rows: Sequence[Row], int8: Row) -> list[Row]:
    """The summary table: mean ± 95 % CI of each of :data:`MEASURES` and of the accuracy
    drop, the median temperature, and the int8 export's figures."""
    summary: list[Row] = []
    for key, name in MEASURES.items():
        mean, ci = _mean_ci([row[key] for row in rows])
        if key.startswith("auroc"):
            summary.append({"measure": name, "value": f"{mean:.3f} ± {ci:.3f}"})
        else:
            summary.append(
                {"measure": f"{name} (%)", "value": f"{100 * mean:.1f} ± {100 * ci:.1f}"}
            )
    drops = [100 * (row["accuracy"] - row["accuracy_with_rejection"]) for row in rows]
    mean, ci = _mean_ci(drops)
    summary.append({"measure": "accuracy drop (points)", "value": f"{mean:.2f} ± {ci:.2f}"})
    temperature = statistics.median(row["temperature"] for row in rows)
    queries = int8["queries"]
    return [
        *summary,
        {"measure": "temperature (median)", "value": f"{temperature:.3g}"},
        {
            "measure": "ONNX size float / int8 (MB)",
            "value": f"{int8['float_mb']:.1f} / {int8['int8_mb']:.1f}",
        },
        {
            "measure": f"int8 top-1 agreement with float ({queries} queries, %)",
            "value": f"{100 * int8['top1_agreement']:.0f}",
        },
        {
            "measure": f'int8 "none of these" agreement ({queries} queries, %)',
            "value": f"{100 * int8['rejection_agreement']:.0f}",
        },
    ]


def _trade_off(rows: Sequence[Row], threshold: float) -> list[Row]:
    """Mean rejection rates and accuracy drop at ``threshold`` and each of :data:`SWEEP`,
    by threshold."""
    accuracy = 100 * statistics.fmean(row["accuracy"] for row in rows)
    table = []
    for level in sorted({threshold, *SWEEP}):
        suffix = "" if level == threshold else f"@{level}"

        def mean(key: str, suffix: str = suffix) -> float:
            return 100 * statistics.fmean(row[key + suffix] for row in rows)

        table.append(
            {
                "threshold": level,
                "untaught rejected (%)": f"{mean('untaught_rejected'):.1f}",
                "known rejected (%)": f"{mean('known_rejected'):.1f}",
                "accuracy drop (points)": f"{accuracy - mean('accuracy_with_rejection'):.1f}",
            }
        )
    return table


def run_openset_benchmark(
    learner: BackboneLearner,
    tasks: Sequence[Task],
    way: int,
    output: Path,
    *,
    model: str,
    threshold: float = DEFAULT_THRESHOLD,
    progress: bool = True,
) -> str:
    """Open-set figures of ``learner`` on ``tasks`` (whose first ``way`` labels are
    taught) and its int8 export; writes ``openset.csv/.md`` (and the per-task rows) into
    ``output`` and returns the table."""
    learner = learner.eval()
    principal = principal_background(background_features(learner.backbone)[0], PRINCIPAL)
    rows = [
        _task_row(learner, task, way, threshold, principal)
        for task in tqdm(tasks, desc="open set", disable=not progress)
    ]
    queries = torch.cat([task.query_images for task in tasks])[:AGREEMENT_QUERIES]
    int8 = _int8_row(learner, tasks[0], way, queries)
    task = tasks[0]
    untaught = int(task.support_labels.max()) + 1 - way
    table = (
        f"Open set on {len(tasks)} emoji tasks: {way} classes taught from "
        f"{', '.join(SUPPORT_STYLES)} ({task.support_labels.numel() // (way + untaught)} images "
        f"each), queried with {', '.join(QUERY_STYLES)}; {untaught} untaught classes' query "
        f"images as unknowns; threshold {threshold}; {model}; mean ± 95% CI over tasks.\n\n"
        + markdown_table(_summary(rows, int8))
        + "\n\nThe trade-off at other thresholds (means over the same tasks):\n\n"
        + markdown_table(_trade_off(rows, threshold))
    )
    output.mkdir(parents=True, exist_ok=True)
    write_csv(rows, output / "openset.csv")
    (output / "openset.md").write_text(table + "\n")
    return table
