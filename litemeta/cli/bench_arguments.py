"""The arguments the benchmarks share: a step grid, a memory budget, emoji tasks."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from litemeta.cli.arguments import (
    accepted,
    add_device_argument,
    add_learners_argument,
    add_model_arguments,
    backbone_name,
    count,
    positive_float,
    positive_int,
)


def mode_name(name: str) -> str:
    from litemeta.bench.step import parse_mode

    return accepted(parse_mode, name)


def add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    from litemeta.bench.step import MODES
    from litemeta.bench.sweep import GRID_LEARNERS, IMAGE_SIZES, SUPPORT_SIZES
    from litemeta.precision import PRECISIONS

    add_learners_argument(parser, GRID_LEARNERS)
    parser.add_argument("--sizes", nargs="+", type=positive_int, default=list(IMAGE_SIZES))
    parser.add_argument(
        "--support",
        nargs="+",
        type=positive_int,
        default=list(SUPPORT_SIZES),
        help="support sizes N",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        type=mode_name,
        default=list(MODES),
        help="inference, backprop, checkpoint, lite-<h>, lite-<h>-fused (the drawn rows in "
        "the last query batch's pass) (default: %(default)s)",
    )
    parser.add_argument(
        "--way", type=positive_int, default=10, help="classes per task (N / way shots)"
    )
    parser.add_argument("--queries-per-class", type=positive_int, default=2)
    parser.add_argument("--query-batch-size", type=positive_int, default=10)
    parser.add_argument(
        "--chunk-size",
        type=positive_int,
        default=None,
        help="images per pass without autograd (default: the learner's, 64)",
    )
    add_device_argument(parser)
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads per configuration's process",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="as training.precision (default: auto, bf16 autocast on a GPU, fp32 on the CPU)",
    )
    add_model_arguments(parser)


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    from litemeta.bench.fit import FIT_BACKBONES, FIT_LEARNERS, FIT_SIZES

    parser.add_argument(
        "--budget", nargs="+", type=positive_float, required=True, help="budgets in GiB"
    )
    add_learners_argument(parser, FIT_LEARNERS)
    parser.add_argument(
        "--backbones", nargs="+", type=backbone_name, default=list(FIT_BACKBONES), help="backbones"
    )
    parser.add_argument("--sizes", nargs="+", type=positive_int, default=list(FIT_SIZES))
    parser.add_argument("--way", type=positive_int, default=10, help="classes per task")
    parser.add_argument("--query-batch-size", type=positive_int, default=10)
    parser.add_argument(
        "--precision", choices=["fp32", "bf16"], default="fp32", help="(default: fp32)"
    )
    add_device_argument(parser)
    parser.add_argument(
        "--check",
        action="store_true",
        help="instead of the table, plan h: auto under each budget and measure one real step "
        "at the plan's sizes (fit-check.md)",
    )
    parser.add_argument("--out", default=None, help="output directory (default runs/bench/fit)")


def add_emoji_task_arguments(
    parser: argparse.ArgumentParser, learners: Sequence[str], way: int
) -> None:
    add_learners_argument(parser, learners)
    parser.add_argument(
        "--size", type=positive_int, default=84, help="image side in pixels (default 84)"
    )
    parser.add_argument("--way", type=positive_int, default=way)
    parser.add_argument("--shot", type=positive_int, default=5)
    parser.add_argument("--queries", type=positive_int, default=2, help="queries per class")
    parser.add_argument("--seed", type=int, default=0, help="which emoji test tasks")
    add_model_arguments(parser)


def add_openset_arguments(openset: argparse.ArgumentParser) -> None:
    openset.add_argument(
        "--checkpoint",
        default=None,
        help="a checkpoint or training output directory (default: the pretrained backbone "
        "with ProtoNets' classifier, as `litemeta serve` without one)",
    )
    openset.add_argument(
        "--split",
        choices=["train", "validation", "test"],
        default="test",
        help="emoji classes to draw from (default: %(default)s; tune on validation)",
    )
    openset.add_argument("--tasks", type=positive_int, default=40, help="tasks (default 40)")
    openset.add_argument("--way", type=positive_int, default=5, help="taught classes (5)")
    openset.add_argument(
        "--untaught", type=positive_int, default=5, help="untaught classes per task (5)"
    )
    openset.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="familiarity threshold (default: the web app's calibrated default)",
    )
    openset.add_argument("--seed", type=int, default=0, help="which tasks")
    openset.add_argument(
        "--out", default=None, help="output directory (default runs/bench/openset)"
    )


def add_pipeline_arguments(pipeline: argparse.ArgumentParser) -> None:
    pipeline.add_argument(
        "--config",
        default="default",
        help="a YAML file or shipped config whose data, model and LITE settings are used "
        "(default: default)",
    )
    pipeline.add_argument(
        "--workers", nargs="+", type=count, default=[0, 1, 2], help="loader worker counts"
    )
    pipeline.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help="model image side in pixels (default: the config's model.image_size)",
    )
    pipeline.add_argument(
        "--tasks", type=positive_int, default=40, help="tasks drawn per measurement"
    )
    pipeline.add_argument(
        "--way", type=positive_int, default=None, help="classes per task (default: config)"
    )
    pipeline.add_argument("--shot", type=positive_int, default=None, help="shots (default: config)")
    pipeline.add_argument(
        "--queries", type=positive_int, default=None, help="queries per class (default: config)"
    )
    pipeline.add_argument("--seed", type=int, default=0, help="which tasks")
    add_device_argument(pipeline)
    pipeline.add_argument(
        "--backbone", type=backbone_name, default=None, help="backbone name (default: the config's)"
    )
    pipeline.add_argument(
        "--no-pretrained", action="store_true", help="random backbone weights (no weight file)"
    )
    pipeline.add_argument(
        "--no-model", action="store_true", help="skip the rows where LITE steps consume tasks"
    )
    pipeline.add_argument(
        "--no-cache", action="store_true", help="skip the decoded-image cache comparison"
    )
    pipeline.add_argument(
        "--no-decode", action="store_true", help="skip the stored-size against CPU-resize rows"
    )
    pipeline.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads of the consuming process",
    )
    pipeline.add_argument(
        "--decode-sizes",
        nargs="+",
        type=positive_int,
        default=None,
        help="sizes for the stored-size against CPU-resize rows (default: --size and 224)",
    )
    pipeline.add_argument(
        "--out", default="runs/bench/pipeline", help="output directory (default: %(default)s)"
    )
