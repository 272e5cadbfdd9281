"""``litemeta data``: build the emoji set, describe a dataset, export a VTAB task."""

from __future__ import annotations

import argparse
from pathlib import Path


def _data_build_emoji(args: argparse.Namespace) -> None:
    from litemeta.data.emoji_build import build_emoji

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

    print(describe(args.dataset, verify=args.verify))


def _data_export_vtab(args: argparse.Namespace) -> None:
    from litemeta.data.vtab_export import export_vtab_task

    written = export_vtab_task(
        args.task,
        args.out,
        protocol=args.protocol,
        data_dir=args.tfds_dir,
        any_tfds_version=args.any_tfds_version,
    )
    counts = ", ".join(f"{split} {count}" for split, count in written.items())
    print(f"wrote {args.task} ({counts} images) to {args.out}")


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
    info.add_argument(
        "--verify", action="store_true", help="decode every image and list the unreadable ones"
    )
    info.set_defaults(handler=_data_info)

    from litemeta.data.vtab_export import VTAB_TASKS

    vtab = commands.add_parser(
        "export-vtab",
        help="write a VTAB-1k task from TensorFlow Datasets as class folders (needs "
        "tensorflow-datasets)",
    )
    vtab.add_argument("task", choices=list(VTAB_TASKS), help="one of VTAB-1k's 19 tasks")
    vtab.add_argument("--out", required=True, help="a new folder: data.root of the vtab configs")
    vtab.add_argument(
        "--protocol",
        choices=("vtab-1k", "lite"),
        default="vtab-1k",
        help="vtab-1k: train800/ val200/ test/ (--config vtab); lite: LITE's train/ (first "
        "1,000) and test/ (--config paper-vtab)",
    )
    vtab.add_argument("--tfds-dir", default=None, help="TensorFlow Datasets' data_dir")
    vtab.add_argument(
        "--any-tfds-version",
        action="store_true",
        help="load the installed version where TFDS lacks the one VTAB pins",
    )
    vtab.set_defaults(handler=_data_export_vtab)
