"""Write a benchmark's rows as CSV, a markdown table and a PNG plot."""

from __future__ import annotations

import csv
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

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


def format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def markdown_table(rows: Sequence[Row], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured markdown table of ``rows`` (all keys, or just ``columns``)."""
    columns = list(columns or dict.fromkeys(key for row in rows for key in row))
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(format_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
