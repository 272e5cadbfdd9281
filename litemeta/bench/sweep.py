"""Run a grid of step configurations, one process each, skipping those that cannot fit.

Configurations run in order of support size within each (learner, image size, mode). Before
a configuration runs, its peak memory is estimated from the largest smaller one measured:
that peak plus the growth of the bytes autograd saves per extra support image, taken
between the two largest measured sizes (or, from one size only, the saved bytes per image:
the safe upper bound), times the extra images. One whose
estimate exceeds the memory available now is reported as not fitting, with the estimate,
instead of being run (and crashing, or pushing other processes out of memory).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tqdm.auto import tqdm

from litemeta.device import available_memory_bytes

from .isolation import run_isolated
from .report import Row
from .step import INFERENCE, StepConfig, measure_step

__all__ = [
    "DOES_NOT_FIT",
    "GRID_LEARNERS",
    "IMAGE_SIZES",
    "SUPPORT_SIZES",
    "Grid",
    "Measurement",
    "available_memory_bytes",
    "peak_key",
    "ratio_to_inference",
    "report_failures",
    "run_grid",
    "target_point",
    "verdict",
]

DOES_NOT_FIT = "does not fit"
#: Statuses that are results, not failures: measured, or too large for the memory there is.
MEASURED = ("ok", DOES_NOT_FIT, "out of memory")
MIB = 2**20

#: The full grid of the memory and speed benchmarks: the learners the LITE paper measures
#: (any registered learner can be named instead).
GRID_LEARNERS = ("protonets", "simple_cnaps")
IMAGE_SIZES = (84, 224)
SUPPORT_SIZES = (50, 100, 250, 500, 1000)
#: Where the paper-derived targets are stated: 224 px images, N = 1000 support images.
TARGET_POINT = (224, 1000)


@dataclass(frozen=True)
class Grid:
    """The configurations of a memory or speed benchmark: every combination of these."""

    learners: Sequence[str]
    image_sizes: Sequence[int]
    support_sizes: Sequence[int]
    modes: Sequence[str]
    template: StepConfig

    def configs(self) -> list[StepConfig]:
        combos = itertools.product(
            self.learners, self.image_sizes, self.modes, sorted(self.support_sizes)
        )
        return [
            replace(self.template, learner=learner, image_size=size, mode=mode, support=support)
            for learner, size, mode, support in combos
        ]


def peak_key(device: str) -> str:
    """The row field holding a configuration's peak memory on ``device``."""
    return "peak_gpu_bytes" if device.startswith("cuda") else "peak_rss_bytes"


@dataclass(frozen=True)
class Measurement:
    """A measured configuration, the basis of the estimate for larger ones."""

    support: int
    peak_bytes: int
    saved_bytes: int
    #: Saved bytes added per extra support image.
    growth_per_image: float

    @classmethod
    def first(cls, support: int, peak_bytes: int, saved_bytes: int) -> Measurement:
        """The first size of a series: assume saved bytes grow in proportion to N."""
        return cls(support, peak_bytes, saved_bytes, saved_bytes / support)

    def then(self, support: int, peak_bytes: int, saved_bytes: int) -> Measurement:
        """A larger size of the same series: growth measured between the two."""
        growth = max(0.0, (saved_bytes - self.saved_bytes) / (support - self.support))
        return Measurement(support, peak_bytes, saved_bytes, growth)

    def estimate(self, support: int) -> int:
        """Peak memory at ``support`` images: this peak plus the growth per image times
        the extra images."""
        return int(self.peak_bytes + self.growth_per_image * (support - self.support))


Measure = Callable[[StepConfig, int, int], Row]


def measure_isolated(config: StepConfig, repeats: int, memory_limit_bytes: int) -> Row:
    """:func:`measure_step` in a fresh process (its own peak memory); on the CPU the child
    may not grow past ``memory_limit_bytes``."""
    on_cpu = not config.device.startswith("cuda")
    return run_isolated(
        measure_step,
        {"config": asdict(config), "repeats": repeats},
        memory_limit_bytes=memory_limit_bytes if on_cpu else None,
    )


def run_grid(
    configs: Sequence[StepConfig],
    *,
    repeats: int = 0,
    available_bytes: Callable[[str], int] = available_memory_bytes,
    measure: Measure = measure_isolated,
    progress: bool = True,
    description: str = "configurations",
) -> list[Row]:
    """Measure every distinct configuration (see :func:`litemeta.bench.step.measure_step`;
    a repeated one is measured once).

    Each row holds the configuration, ``status`` (``ok``, ``does not fit``, ``out of
    memory``, ...), ``peak_bytes`` (process RSS on the CPU, allocated GPU memory on CUDA),
    ``saved_bytes``, ``estimated_peak_bytes`` where an estimate existed, ``available_bytes``
    and, with ``repeats``, ``seconds``.
    """
    measured: dict[tuple, Measurement] = {}
    rows: list[Row] = []
    bar = tqdm(
        sorted(dict.fromkeys(configs), key=lambda c: (c.learner, c.image_size, c.mode, c.support)),
        desc=description,
        disable=not progress,
    )
    for config in bar:
        bar.set_postfix_str(f"{config.learner} {config.image_size}px {config.mode}")
        series = (config.learner, config.image_size, config.mode, config.device)
        available = available_bytes(config.device)
        row: Row = {
            "learner": config.learner,
            "image_size": config.image_size,
            "support": config.support,
            "mode": config.mode,
            "precision": config.precision,
            "available_bytes": available,
        }
        basis = measured.get(series)
        if basis is not None:
            row["estimated_peak_bytes"] = basis.estimate(config.support)
            if row["estimated_peak_bytes"] > available:
                rows.append({**row, "status": DOES_NOT_FIT})
                continue
        result = measure(config, repeats, available)
        peak = result.pop(peak_key(config.device), None)
        result.pop("peak_rss_bytes", None)
        row.update(result, peak_bytes=peak)
        if row["status"] == "ok":
            measured[series] = (
                Measurement.first(config.support, peak, row["saved_bytes"])
                if basis is None
                else basis.then(config.support, peak, row["saved_bytes"])
            )
        rows.append(row)
    return rows


def report_failures(rows: Sequence[Row], csv_path: Path) -> None:
    """Print one line per configuration that failed (a status not in :data:`MEASURED`) to
    stderr: its settings, status and the last line of its error. Raise ``RuntimeError`` if
    every configuration failed."""
    failed = [row for row in rows if row["status"] not in MEASURED]
    for row in failed:
        error = row.get("error", "").strip().splitlines()
        print(
            f"failed: {row['learner']}, {row['image_size']} px, N = {row['support']}, "
            f"{row['mode']}: {row['status']}{': ' + error[-1] if error else ''}",
            file=sys.stderr,
        )
    if failed and len(failed) == len(rows):
        raise RuntimeError(f"every configuration failed (reasons above, tracebacks in {csv_path})")


def ratio_to_inference(
    rows: Sequence[Row], field: str, output: str, fallback: str | None = None
) -> None:
    """Set ``output`` on each row: its ``field`` (or, where missing, its ``fallback``
    field) over the inference pass's ``field`` at the same learner, image and support size."""
    reference = {
        (r["learner"], r["image_size"], r["support"]): r.get(field)
        for r in rows
        if r["mode"] == INFERENCE and r["status"] == "ok"
    }
    for row in rows:
        value = row.get(field)
        if value is None and fallback is not None:
            value = row.get(fallback)
        base = reference.get((row["learner"], row["image_size"], row["support"]))
        row[output] = value / base if value is not None and base else None


def target_point(rows: Sequence[Row], learner: str) -> tuple[str, dict[str, Row]]:
    """The rows of ``learner`` at the target point, by mode, and a description of it: 224 px
    and N = 1000 when the grid has them, else its largest image and support size (said so)."""
    own = [r for r in rows if r["learner"] == learner]
    point = max(r["image_size"] for r in own), max(r["support"] for r in own)
    where = f"{point[0]} px, N = {point[1]}"
    if point != TARGET_POINT:
        where += f" (the targets are stated at {TARGET_POINT[0]} px, N = {TARGET_POINT[1]})"
    at = {r["mode"]: r for r in own if (r["image_size"], r["support"]) == point}
    return where, at


def verdict(ratio: float | None, target: float, *, at_most: bool) -> str:
    """``1.07x (met)``-style text for a ratio against a target bound."""
    if ratio is None:
        return "not measured"
    met = ratio <= target if at_most else ratio >= target
    return f"{ratio:.2f}x ({'met' if met else 'not met'})"
