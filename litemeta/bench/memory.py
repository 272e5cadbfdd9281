"""Peak memory of one meta-training step against support size (Bronskill et al.,
"Memory Efficient Meta-Learning with Large Images", NeurIPS 2021, Figure 1 / Table 1).

Each configuration runs in its own process. On the CPU the peak is the process's peak
resident memory and, exactly, the bytes autograd saved for backward; on CUDA the peak is
``torch.cuda.max_memory_allocated``. Targets: LITE with h = 8 at N = 1000, 224 px within
1.25x the inference pass's peak; full back-propagation needing at least 20x.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .report import Row, configuration_columns, plot_by_mode, titled_table, write_outputs
from .sweep import (
    MIB,
    Grid,
    ratio_to_inference,
    report_failures,
    run_grid,
    target_point,
    verdict,
)

__all__ = [
    "BACKPROP_TARGET",
    "LITE_TARGET",
    "memory_report",
    "memory_targets",
    "run_memory_benchmark",
]

LITE_TARGET = 1.25
BACKPROP_TARGET = 20.0


def _table_row(row: Row) -> Row:
    def mib(field: str) -> float | None:
        value = row.get(field)
        return value / MIB if value is not None else None

    return {
        **configuration_columns(row),
        "peak MiB": mib("peak_bytes"),
        "est. peak MiB": mib("estimated_peak_bytes"),
        "saved for backward MiB": mib("saved_bytes"),
        "peak / inference": row.get("peak_vs_inference"),
    }


def memory_targets(rows: Sequence[Row]) -> list[str]:
    """One line per learner on the targets, at 224 px and N = 1000 when the grid has them,
    else at its largest image and support size (said so)."""
    lines = []
    for learner in dict.fromkeys(r["learner"] for r in rows):
        where, at = target_point(rows, learner)
        lite = at.get("lite-8", {}).get("peak_vs_inference")
        full = at.get("backprop", {}).get("peak_vs_inference")
        estimated = " (estimated)" if at.get("backprop", {}).get("peak_bytes") is None else ""
        lines.append(
            f"- {learner}, {where}: LITE h = 8 peak / inference "
            f"{verdict(lite, LITE_TARGET, at_most=True)}, target <= {LITE_TARGET}x; "
            f"full back-propagation{estimated} {verdict(full, BACKPROP_TARGET, at_most=False)}, "
            f"target >= {BACKPROP_TARGET:.0f}x"
        )
    return lines


def run_memory_benchmark(grid: Grid, output: Path, *, progress: bool = True) -> str:
    """Measure the grid, write ``memory.csv/.md/.png`` into ``output``; return the table
    (see :func:`sweep.report_failures` for configurations that failed)."""
    rows = run_grid(grid.configs(), progress=progress, description="memory")
    table = memory_report(rows, output, on_gpu=grid.template.device.startswith("cuda"))
    report_failures(rows, output / "memory.csv")
    return table


def memory_report(rows: list[Row], output: Path, *, on_gpu: bool) -> str:
    """Write ``memory.csv/.md/.png`` for measured rows (e.g. those of the speed benchmark,
    which hold the peak memory too) into ``output``; return the table."""
    ratio_to_inference(rows, "peak_bytes", "peak_vs_inference", fallback="estimated_peak_bytes")
    peak = "GPU max allocated" if on_gpu else "process peak RSS"
    table = titled_table(
        f"Peak memory ({peak}) of one meta-training step.",
        [_table_row(r) for r in rows],
        memory_targets(rows),
    )
    write_outputs(
        rows,
        output,
        "memory",
        table,
        lambda path: plot_by_mode(
            rows,
            "peak_bytes",
            f"peak memory, GiB ({peak})",
            path,
            estimate="estimated_peak_bytes",
            scale=2**30,
        ),
    )
    return table
