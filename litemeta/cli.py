"""The ``litemeta`` command: one argparse sub-parser per command group.

Each group registers itself with a ``add_<group>_commands(subparsers)`` function and
sets ``handler`` on its parsers; ``main`` only dispatches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _data_build_emoji(args: argparse.Namespace) -> None:
    from litemeta.data.emoji import build_emoji

    splits = build_emoji(
        out=Path(args.out),
        size=args.size,
        limit=args.limit,
        packages=Path(args.packages) if args.packages else None,
        styles=args.styles,
        image_format=args.format,
        quality=args.quality,
    )
    counts = ", ".join(f"{name} {len(classes)}" for name, classes in splits.items())
    print(f"wrote {sum(len(c) for c in splits.values())} classes ({counts}) to {args.out}")


def _data_info(args: argparse.Namespace) -> None:
    from litemeta.data.info import describe

    print(describe(args.dataset))


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    from litemeta.data.emoji import STYLES

    data = subparsers.add_parser("data", help="datasets: build the emoji set, describe a dataset")
    commands = data.add_subparsers(dest="data_command", required=True)

    build = commands.add_parser(
        "build-emoji",
        help="fetch the emoji packages with npm and write class folders at any size",
    )
    build.add_argument("--out", required=True, help="output directory, or a path ending in .zip")
    build.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    build.add_argument("--limit", type=int, default=None, help="keep N emoji per split")
    build.add_argument("--styles", nargs="+", default=list(STYLES), choices=STYLES)
    build.add_argument("--format", choices=("png", "webp"), default="png")
    build.add_argument("--quality", type=int, default=90, help="WebP quality (default 90)")
    build.add_argument(
        "--packages", default=None, help="folder of already unpacked packages (skips npm)"
    )
    build.set_defaults(handler=_data_build_emoji)

    info = commands.add_parser("info", help="print classes, images, styles, splits, sizes")
    info.add_argument(
        "dataset",
        nargs="?",
        default="emoji",
        help="'emoji' (built-in), class folders (dir or .zip), ORBIT root or Meta-Dataset records",
    )
    info.set_defaults(handler=_data_info)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="litemeta", description="Meta-train few-shot image classifiers with LITE."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_data_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"litemeta: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
