"""Write a benchmark's rows as CSV, a markdown table and a PNG plot."""

from __future__ import annotations

import csv
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from litemeta.evaluation import markdown_table

Row = dict[str, Any]


def machine_description() -> str:
    """One line naming the machine a benchmark ran on."""
    cpu = platform.processor() or platform.machine()
    cpu_model = _cpu_model_name()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (CPU only)"
    return (
        f"{cpu_model or cpu}, {torch.get_num_threads()} torch threads, {device}; "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def _cpu_model_name() -> str | None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return None
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def write_csv(rows: Sequence[Row], path: Path) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def configuration_columns(row: Row) -> Row:
    """The table columns that name a grid row's configuration and its status; the
    precision only where it was chosen (not ``auto``)."""
    columns = {
        "learner": row["learner"],
        "px": row["image_size"],
        "N": row["support"],
        "mode": row["mode"],
    }
    if row.get("precision", "auto") != "auto":
        columns["precision"] = row["precision"]
    return {**columns, "status": row["status"]}


def titled_table(title: str, rows: Sequence[Row], notes: Sequence[str]) -> str:
    """``title``, the markdown table of ``rows`` and one line per note (e.g. targets)."""
    return f"{title}\n\n" + markdown_table(rows) + "\n" + "\n".join(notes) + "\n"


def plot_by_mode(
    rows: Sequence[Row],
    value: str,
    ylabel: str,
    path: Path,
    *,
    estimate: str | None = None,
    scale: float = 1.0,
) -> Path:
    """One panel per (learner, image size): ``value`` against support size, a line per mode.

    Where a row has no ``value`` but has ``estimate``, the estimate is drawn as a hollow
    marker. ``scale`` divides the values (e.g. bytes to GiB). Log-log axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((r["learner"], r["image_size"]) for r in rows))
    figure, axes = plt.subplots(
        1, len(panels), figsize=(5 * len(panels), 4), squeeze=False, sharey=True
    )
    for axis, (learner, size) in zip(axes[0], panels, strict=True):
        panel = [r for r in rows if (r["learner"], r["image_size"]) == (learner, size)]
        for mode in dict.fromkeys(r["mode"] for r in panel):
            series = [r for r in panel if r["mode"] == mode]
            measured = [r for r in series if r.get(value)]
            guessed = [r for r in series if not r.get(value) and estimate and r.get(estimate)]
            if not measured + guessed:
                continue
            (line,) = axis.plot(
                [r["support"] for r in measured],
                [r[value] / scale for r in measured],
                marker="o",
                label=mode,
            )
            if guessed:
                axis.plot(
                    [r["support"] for r in guessed],
                    [r[estimate] / scale for r in guessed],
                    linestyle="none",
                    marker="o",
                    mfc="none",
                    color=line.get_color(),
                    label=f"{mode} (estimated, did not fit)",
                )
        if axis.lines:
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.legend(fontsize=7)
        axis.set_title(f"{learner}, {size} px")
        axis.set_xlabel("support images N")
        axis.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    return save_figure(figure, path)


def save_figure(figure: Any, path: Path) -> Path:
    """Lay out, write as PNG and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_outputs(
    rows: Sequence[Row],
    directory: Path,
    name: str,
    table: str,
    plot: Callable[[Path], Path],
) -> dict[str, Path]:
    """Write ``<name>.csv`` (all fields of ``rows``), ``<name>.md`` (``table``) and
    ``<name>.png`` (drawn by ``plot``) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {kind: directory / f"{name}.{kind}" for kind in ("csv", "md", "png")}
    write_csv(rows, paths["csv"])
    paths["md"].write_text(table)
    plot(paths["png"])
    return paths
