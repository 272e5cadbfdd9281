"""Evaluation reports: markdown tables (:func:`markdown_table`, which the benchmarks' reports
use too), a figure (matplotlib) and the raw results as JSON."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from litemeta.evaluation.metrics import (
    ORBIT_METRICS,
    EvaluationResult,
    MeanCI,
    OrbitSummary,
    SourceSummary,
)

__all__ = [
    "ORBIT_AVERAGING",
    "format_cell",
    "markdown_table",
    "plot_results",
    "results_table",
    "write_report",
]


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


def format_cell(value: Any) -> str:
    """A table cell: floats to three significant digits (thousands with separators), text
    and integers as they are, ``None`` empty."""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    right_aligned: Collection[str] = (),
) -> str:
    """A GitHub-flavoured markdown table of ``rows`` (all keys in first-seen order, or just
    ``columns``), cells by :func:`format_cell`; ``right_aligned`` columns align right."""
    columns = list(columns or dict.fromkeys(key for row in rows for key in row))
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---:" if c in right_aligned else "---" for c in columns) + "|",
    ]
    lines += ["| " + " | ".join(format_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


#: The accuracy columns of the results tables, saying what is averaged.
ACCURACY_COLUMN = "Accuracy (%) ± 95% CI (per task: its queries; mean over tasks)"
SOURCE_ACCURACY_COLUMN = "Accuracy (%) ± 95% CI"
ORBIT_COLUMNS = [f"{metric.replace('_', ' ')} (%)" for metric in ORBIT_METRICS]


def _source_rows(name: str, summary: SourceSummary) -> list[dict[str, object]]:
    """A row per source, then the unweighted average over sources (it has no interval)."""
    rows: list[dict[str, object]] = [
        {"Model": name, "Source": source, "Tasks": stats.n, SOURCE_ACCURACY_COLUMN: _percent(stats)}
        for source, stats in summary.per_source.items()
    ]
    rows.append(
        {
            "Model": name,
            "Source": f"average over {len(summary.per_source)} sources",
            "Tasks": sum(stats.n for stats in summary.per_source.values()),
            SOURCE_ACCURACY_COLUMN: f"{100 * summary.average:.2f}",
        }
    )
    return rows


def _orbit_rows(name: str, summary: OrbitSummary) -> list[dict[str, object]]:
    """A row per way of averaging (:data:`ORBIT_AVERAGING`); pooled frames give the frame
    accuracy only."""
    rows: list[dict[str, object]] = []
    for key, label in ORBIT_AVERAGING.items():
        stats = getattr(summary, key)
        if isinstance(stats, MeanCI):
            cells, n = [_percent(stats), "-", "-"], stats.n
        else:
            cells = [_percent(stats[metric]) for metric in ORBIT_METRICS]
            n = stats[ORBIT_METRICS[0]].n
        row = {"Model": name, "Averaged": label.format(n=n)}
        rows.append(row | dict(zip(ORBIT_COLUMNS, cells, strict=True)))
    return rows


def results_table(results: Mapping[str, EvaluationResult]) -> str:
    """Accuracy per named result (a model: the baseline, the meta-trained learner) and, where
    present, the accuracy per source with the average over sources, and the ORBIT metrics,
    each row labelled with how it is averaged."""
    accuracy = [
        {"Model": name, "Tasks": r.accuracy.n, ACCURACY_COLUMN: _percent(r.accuracy)}
        for name, r in results.items()
    ]
    tables = [markdown_table(accuracy, right_aligned=("Tasks", ACCURACY_COLUMN))]
    sources = [
        row for name, r in results.items() if r.sources for row in _source_rows(name, r.sources)
    ]
    if sources:
        tables.append(markdown_table(sources, right_aligned=("Tasks", SOURCE_ACCURACY_COLUMN)))
    orbit = [row for name, r in results.items() if r.orbit for row in _orbit_rows(name, r.orbit)]
    if orbit:
        tables.append(markdown_table(orbit, right_aligned=ORBIT_COLUMNS))
    return "\n".join(tables)


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
    paths["markdown"].write_text(results_table(results))
    plot_results(results, paths["plot"])
    return paths
