"""Seconds per meta-training step against support size (Bronskill et al., "Memory
Efficient Meta-Learning with Large Images", NeurIPS 2021).

Each configuration runs in its own process and is timed there: one warm-up step, then the
median of ``repeats`` steps. Target: a LITE step with h = 8 costs at most 1.3x an inference
pass (adapt and classify, no autograd) over the same support and query set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .report import Row, configuration_columns, plot_by_mode, titled_table, write_outputs
from .sweep import Grid, ratio_to_inference, report_failures, run_grid, target_point, verdict

__all__ = ["LITE_SPEED_TARGET", "run_speed_benchmark", "speed_targets"]

LITE_SPEED_TARGET = 1.3


def _table_row(row: Row) -> Row:
    return {
        **configuration_columns(row),
        "seconds / step": row.get("seconds"),
        "time / inference": row.get("seconds_vs_inference"),
    }


def speed_targets(rows: Sequence[Row]) -> list[str]:
    """One line per learner on the LITE speed target (see :func:`sweep.target_point`)."""
    lines = []
    for learner in dict.fromkeys(r["learner"] for r in rows):
        where, at = target_point(rows, learner)
        ratio = at.get("lite-8", {}).get("seconds_vs_inference")
        lines.append(
            f"- {learner}, {where}: LITE h = 8 step / inference pass "
            f"{verdict(ratio, LITE_SPEED_TARGET, at_most=True)}, target <= {LITE_SPEED_TARGET}x"
        )
    return lines


def run_speed_benchmark(
    grid: Grid, output: Path, *, repeats: int = 3, progress: bool = True
) -> str:
    """Time the grid, write ``speed.csv/.md/.png`` into ``output``; return the table (see
    :func:`sweep.report_failures` for configurations that failed)."""
    rows = run_grid(grid.configs(), repeats=repeats, progress=progress, description="speed")
    ratio_to_inference(rows, "seconds", "seconds_vs_inference")
    threads = grid.template.threads or "torch's default"
    table = titled_table(
        f"Seconds per meta-training step (median of {repeats} after one warm-up; "
        f"torch threads per process: {threads}).",
        [_table_row(r) for r in rows],
        speed_targets(rows),
    )
    write_outputs(
        rows,
        output,
        "speed",
        table,
        lambda path: plot_by_mode(rows, "seconds", "seconds per step", path),
    )
    report_failures(rows, output / "speed.csv")
    return table
