"""Argument types and the arguments several command groups share."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence


def upload_megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MB, got {text!r}") from None
    if not 1 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be at least 1 (MB), got {text}")
    return value


def at_least(minimum: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 (any free port) to 65535, got {text}")
    return value


def positive_int(text: str) -> int:
    return at_least(1, text)


def count(text: str) -> int:
    return at_least(0, text)


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def accepted(check: Callable[[str], object], text: str) -> str:
    """``text`` if ``check`` accepts it; its ``ValueError`` as an argparse usage error."""
    try:
        check(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def backbone_name(name: str) -> str:
    from litemeta.backbones import check_backbone

    return accepted(check_backbone, name)


def device_name(text: str) -> str:
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:<index>, got {text!r}")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(
            f"{text} is not available here ({torch.cuda.device_count()} CUDA devices); use cpu"
        )
    return str(device)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        type=device_name,
        default=None,
        help="cpu or cuda (default: cuda when available)",
    )


def add_learners_argument(parser: argparse.ArgumentParser, default: Sequence[str]) -> None:
    from litemeta.learners import LEARNERS

    parser.add_argument("--learners", nargs="+", choices=sorted(LEARNERS), default=list(default))


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    from litemeta.backbones import DEFAULT_BACKBONE

    parser.add_argument(
        "--backbone", type=backbone_name, default=DEFAULT_BACKBONE, help="backbone name"
    )
    parser.add_argument(
        "--no-pretrained", action="store_true", help="random backbone weights (no weight file)"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output directory (default runs/bench/NAME; the committed results are in "
        "docs/bench/NAME)",
    )


def add_experiment_arguments(
    parser: argparse.ArgumentParser,
    default: str | None = "default",
    default_help: str = "default, the built-in emoji set on a CPU",
) -> None:
    parser.add_argument(
        "--config",
        default=default,
        help="a YAML file, or a shipped config: default, gpu, orbit, meta-dataset, vtab, "
        "paper-vtab "
        f"(default: {default_help})",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="settings to override, e.g. training.steps=100 model.learner=simple_cnaps",
    )
    parser.set_defaults(unreadable_hint="to skip unreadable images: data.on_error=skip")
