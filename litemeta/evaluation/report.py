"""Evaluation reports: a markdown table, a figure (matplotlib) and the raw results as JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from litemeta.evaluation.metrics import ORBIT_METRICS, EvaluationResult, MeanCI

__all__ = ["ORBIT_AVERAGING", "markdown_table", "plot_results", "write_report"]


def _percent(summary: MeanCI) -> str:
    return f"{100 * summary.mean:.2f} ± {100 * summary.ci95:.2f}"


#: How each ORBIT figure is averaged, as the report labels it (see
#: :class:`~litemeta.evaluation.metrics.OrbitSummary`).
ORBIT_AVERAGING = {
    "over_videos": "per video: mean over {n} videos",
    "over_users": "per user: mean of each user's video means, over {n} users",
    "over_user_frames": "per user: each user's frames pooled, mean over {n} users",
    "over_tasks": "per task: mean of each task's video means, over {n} tasks",
}


def markdown_table(results: Mapping[str, EvaluationResult]) -> str:
    """Accuracy per named result (a model: the baseline, the meta-trained learner) and, where
    present, the accuracy per source with the average over sources, and the ORBIT metrics,
    each row labelled with how it is averaged."""
    lines = [
        "| Model | Tasks | Accuracy (%) ± 95% CI (per task: its queries; mean over tasks) |",
        "|---|---:|---:|",
        *(f"| {name} | {r.accuracy.n} | {_percent(r.accuracy)} |" for name, r in results.items()),
    ]
    by_source = {name: r.sources for name, r in results.items() if r.sources is not None}
    if by_source:
        lines += ["", "| Model | Source | Tasks | Accuracy (%) ± 95% CI |", "|---|---|---:|---:|"]
        for name, summary in by_source.items():
            for source, stats in summary.per_source.items():
                lines.append(f"| {name} | {source} | {stats.n} | {_percent(stats)} |")
            tasks = sum(stats.n for stats in summary.per_source.values())
            sources = len(summary.per_source)
            lines.append(
                f"| {name} | average over {sources} sources | {tasks} | "
                f"{100 * summary.average:.2f} |"
            )
    orbit = {name: r.orbit for name, r in results.items() if r.orbit is not None}
    if orbit:
        header = " | ".join(f"{metric.replace('_', ' ')} (%)" for metric in ORBIT_METRICS)
        lines += ["", f"| Model | Averaged | {header} |", "|---|---|---:|---:|---:|"]
        for name, summary in orbit.items():
            for key, label in ORBIT_AVERAGING.items():
                stats = getattr(summary, key)
                if isinstance(stats, MeanCI):  # frame accuracy only
                    cells = " | ".join([_percent(stats), "-", "-"])
                    n = stats.n
                else:
                    cells = " | ".join(_percent(stats[metric]) for metric in ORBIT_METRICS)
                    n = stats[ORBIT_METRICS[0]].n
                lines.append(f"| {name} | {label.format(n=n)} | {cells} |")
    return "\n".join(lines) + "\n"


def plot_results(results: Mapping[str, EvaluationResult], path: str | Path) -> Path:
    """Save a figure: mean accuracy per result with 95% CI whiskers, and per-task histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    figure, (bars, histogram) = plt.subplots(1, 2, figsize=(10, 4))
    bars.bar(
        names,
        [100 * results[n].accuracy.mean for n in names],
        yerr=[100 * results[n].accuracy.ci95 for n in names],
        capsize=4,
    )
    bars.set_ylabel("accuracy (%)")
    bars.set_ylim(0, 100)
    bars.set_title("mean accuracy ± 95% CI")
    bars.tick_params(axis="x", labelrotation=30)
    for name in names:
        values = [100 * a for a in results[name].task_accuracies]
        histogram.hist(values, bins=20, range=(0, 100), alpha=0.6, label=name)
    histogram.set_xlabel("task accuracy (%)")
    histogram.set_ylabel("tasks")
    histogram.set_title("per-task accuracy")
    histogram.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_report(results: Mapping[str, EvaluationResult], directory: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``accuracy.png`` into ``directory``."""
    if not results:
        raise ValueError("no results to report")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": directory / "results.json",
        "markdown": directory / "results.md",
        "plot": directory / "accuracy.png",
    }
    serialisable = {name: result.to_dict() for name, result in results.items()}
    paths["json"].write_text(json.dumps(serialisable, indent=2) + "\n")
    paths["markdown"].write_text(markdown_table(results))
    plot_results(results, paths["plot"])
    return paths
