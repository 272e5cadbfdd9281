"""``litemeta personalise``, ``serve`` and ``export``: a trained learner adapted to the
user's own images."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from litemeta.cli.arguments import port, positive_int, upload_megabytes

TOKEN_VARIABLE = "LITEMETA_TOKEN"  # the web app's token, kept out of the command line


def printable(path: str) -> str:
    """A file name for any terminal: bytes that are not UTF-8 shown as ``\\xe9``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _personalise(args: argparse.Namespace) -> None:
    from litemeta.experiment.jobs import personalise

    predictions = personalise(
        args.checkpoint,
        args.support,
        args.query,
        output_dir=args.output,
        skip_unreadable=args.skip_unreadable,
    )
    skipped = [p for p in predictions if p.error]
    for prediction in predictions:
        if not prediction.error:
            path = printable(prediction.path)
            print(f"{path}\t{prediction.label}\t{prediction.probability:.3f}")
    for prediction in skipped:
        print(f"skipped unreadable image: {prediction.error}", file=sys.stderr)
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s), listed above", file=sys.stderr)
    if args.output:
        print(f"wrote predictions.csv and predictions.json to {args.output}")


def require_serve_extra(command: str) -> None:
    import importlib.util

    missing = [
        m for m in ("fastapi", "uvicorn", "multipart", "onnx") if not importlib.util.find_spec(m)
    ]
    if missing:
        raise RuntimeError(
            f"`litemeta {command}` needs {', '.join(missing)}: pip install 'litemeta[serve]'"
        )


def _serve(args: argparse.Namespace) -> None:
    require_serve_extra("serve")
    from litemeta.serve.app import run_server
    from litemeta.serve.store import default_store_dir

    run_server(
        args.checkpoint,
        host=args.host,
        port=args.port,
        store=args.store or default_store_dir(),
        token=_serve_token(args),
        max_upload_mb=args.max_upload_mb,
        chunk_size=args.chunk_size,
    )


def _serve_token(args: argparse.Namespace) -> str | None:
    """The token from ``--token``, ``--token-file`` (its first line) or $LITEMETA_TOKEN."""
    if args.token_file is not None:
        path = Path(args.token_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"--token-file {path}: cannot read it ({error})") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise ValueError(f"--token-file {path} is empty; write the token on its first line")
        return token
    return args.token or os.environ.get(TOKEN_VARIABLE) or None


def _export(args: argparse.Namespace) -> None:
    require_serve_extra("export")
    from litemeta.checkpoint import write_files_atomically
    from litemeta.serve.export import export_folders

    out = Path(args.out)
    if out.is_dir():  # before the work, not after it
        raise IsADirectoryError(f"--out {out} is a folder; give a file, e.g. {out}/model.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    model, labels = export_folders(args.checkpoint, args.support)
    write_files_atomically({out: lambda partial: partial.write_bytes(model)})
    print(
        f"wrote {out} ({len(model) / 2**20:.1f} MB): uint8 images in, probabilities of {labels}, "
        '"none of these" and score out'
    )


def add_personalise_commands(subparsers: argparse._SubParsersAction) -> None:
    """``personalise``, ``serve`` and ``export``: a trained learner on the user's own images."""
    personalise = subparsers.add_parser(
        "personalise",
        aliases=["predict"],
        help="adapt to your own class folders in one pass and label a folder of images",
    )
    personalise.add_argument(
        "--checkpoint", required=True, help="a checkpoint or training output directory"
    )
    personalise.add_argument(
        "--support", required=True, help="folder with one sub-folder of images per class"
    )
    personalise.add_argument("--query", required=True, help="folder of images to label")
    personalise.add_argument("--output", default=None, help="write predictions.csv/.json here")
    personalise.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="leave out images that cannot be read and list them (default: stop at the first)",
    )
    personalise.set_defaults(
        handler=_personalise, unreadable_hint="to skip unreadable images: --skip-unreadable"
    )

    _add_serve_command(subparsers)

    export = subparsers.add_parser(
        "export", help="adapt to class folders and write a self-contained ONNX model"
    )
    export.add_argument(
        "--checkpoint", required=True, help="a checkpoint or training output directory"
    )
    export.add_argument(
        "--support", required=True, help="folder with one sub-folder of images per class"
    )
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.set_defaults(handler=_export)


def _add_serve_command(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="a web page to teach a recogniser from photos or the webcam (needs litemeta[serve])",
    )
    serve.add_argument(
        "--checkpoint",
        default=None,
        help="a checkpoint or training output directory (default: none, the ImageNet-pretrained "
        "EfficientNet-Lite0 with ProtoNets' classifier, not meta-trained)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument(
        "--port", type=port, default=8000, help="port, 0 for any free one (default: %(default)s)"
    )
    serve.add_argument(
        "--store",
        default=None,
        help="folder for recognisers and their images (default: the "
        "user data folder, e.g. ~/.local/share/litemeta/serve)",
    )
    secret = serve.add_mutually_exclusive_group()
    secret.add_argument(
        "--token",
        default=None,
        help="secret every API request must send; required to bind to an address other than "
        f"127.0.0.1 (visible to other users in `ps`: prefer --token-file or ${TOKEN_VARIABLE})",
    )
    secret.add_argument(
        "--token-file",
        default=None,
        help=f"read the token from the first line of this file (instead of ${TOKEN_VARIABLE})",
    )
    serve.add_argument(
        "--max-upload-mb",
        type=upload_megabytes,
        default=20,
        help="largest request body (default: %(default)s)",
    )
    serve.add_argument(
        "--chunk-size",
        type=positive_int,
        default=None,
        help="images per forward pass when teaching (default: 16 on a CPU, the learner's "
        "default on a GPU)",
    )
    serve.set_defaults(handler=_serve)
