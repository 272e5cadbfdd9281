"""``litemeta convert``: a published reference checkpoint to a litemeta learner."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from litemeta.cli.arguments import backbone_name, positive_int


def _convert(args: argparse.Namespace) -> None:
    from litemeta.learners.convert import convert_checkpoint, model_overrides

    output = Path(args.output)
    if output.is_dir():
        raise IsADirectoryError(f"{output} is a folder; give a file, e.g. {output}/learner.pt")
    output.parent.mkdir(parents=True, exist_ok=True)
    conversion = convert_checkpoint(
        args.source_format,
        args.source,
        output,
        learner=args.learner,
        backbone=args.backbone,
        image_size=args.image_size,
        encoder_norm=args.encoder_norm,
    )
    learner = conversion.learner
    print(
        f"converted {conversion.mapped} tensors of {args.source} ({args.source_format}) into "
        f"{learner.name} on {learner.backbone.name} at {learner.backbone.image_size} px"
    )
    for key, why in conversion.ignored.items():
        print(f"ignored {key}: {why}")
    command = ["litemeta", "evaluate", "--checkpoint", str(output), *model_overrides(learner)]
    print(f"wrote {output}; evaluate it with: {shlex.join(command)}")
    if learner.options.get("encoder_norm") == "batch":
        print(
            "encoder_norm=batch normalises each batch of encoder_batch_size support images with "
            "its own statistics, as the reference's test code, which is exact for evaluation; to "
            "meta-train this learner further, convert with --encoder-norm frozen_batch"
        )


def add_convert_commands(subparsers: argparse._SubParsersAction) -> None:
    """``litemeta convert``: a published reference checkpoint to a litemeta learner."""
    convert = subparsers.add_parser(
        "convert",
        help="turn a LITE or ORBIT checkpoint into a litemeta learner file",
        description="Map the state dict of LITE's Simple CNAPs or ORBIT's ProtoNets, CNAPs or "
        "Simple CNAPs, key by key with shape checks, into a litemeta learner file that "
        "evaluate, personalise and load_learner read. A tensor that cannot be mapped refuses "
        "the conversion, naming it.",
    )
    convert.add_argument(
        "--from",
        dest="source_format",
        required=True,
        choices=["lite", "orbit"],
        help="the code that wrote SOURCE: cambridge-mlg/LITE or microsoft/ORBIT-Dataset",
    )
    convert.add_argument("source", help="the reference checkpoint (.pt/.pth state dict)")
    convert.add_argument("output", help="the litemeta learner file to write")
    convert.add_argument(
        "--learner",
        default=None,
        help="the litemeta learner (default: what the checkpoint holds: simple_cnaps for "
        "lite; protonets, cnaps or simple_cnaps for orbit)",
    )
    convert.add_argument(
        "--backbone",
        type=backbone_name,
        default=None,
        help="the litemeta backbone (default: tf_efficientnet_b0 for lite, "
        "timm:tf_efficientnet_b0 for orbit)",
    )
    convert.add_argument(
        "--image-size",
        type=positive_int,
        default=224,
        help="image side the learner sees (default: %(default)s, as the checkpoints were trained)",
    )
    convert.add_argument(
        "--encoder-norm",
        choices=["batch", "frozen_batch", "group"],
        default=None,
        help="the set encoder's normalisation (default: as the reference tests: batch, in "
        "batches of 40, for lite; frozen_batch for orbit); frozen_batch to meta-train further",
    )
    convert.set_defaults(handler=_convert)
