"""The ``litemeta`` command: one argparse sub-parser per command group.

Each group registers itself with a ``add_<group>_commands(subparsers)`` function and
sets ``handler`` on its parsers; ``main`` only dispatches.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litemeta.bench.sweep import Grid

DEBUG_VARIABLE = "LITEMETA_DEBUG"
TOKEN_VARIABLE = "LITEMETA_TOKEN"  # the web app's token, kept out of the command line


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


def _print_results(results: dict) -> None:
    from litemeta.evaluation import markdown_table

    if results:
        print(markdown_table(results))


def _train(args: argparse.Namespace) -> None:
    import torch

    from litemeta.experiment import load_experiment
    from litemeta.experiment.jobs import train_experiment
    from litemeta.training import torchrun_environment

    config = load_experiment(args.config, args.overrides)
    if args.config == "gpu" and not torch.cuda.is_available():
        warnings.warn(
            "the gpu config is sized for a CUDA GPU and none is found: on a CPU each of its "
            "steps takes about a minute; --config default is the main job for a CPU",
            stacklevel=2,
        )
    try:
        results = train_experiment(
            config, resume=args.resume, compare_baseline=not args.no_baseline
        )
    except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM (Terminated)
        raise type(interrupt)(_resume_advice(args, config.training.output_dir)) from None
    if torchrun_environment().rank == 0:  # under torchrun the first process reports
        _print_results(results)
        print(f"checkpoints and logs in {config.training.output_dir}")


def _resume_advice(args: argparse.Namespace, output_dir: str) -> str:
    from litemeta.checkpoint import LAST_CHECKPOINT

    last = Path(output_dir) / LAST_CHECKPOINT
    if not last.is_file():
        return f"no checkpoint was written yet in {output_dir}; run the command again to start over"
    command = ["litemeta", "train", "--config", args.config, *args.overrides]
    if args.no_baseline:
        command.append("--no-baseline")
    return f"the last checkpoint is {last}; continue with: {shlex.join(command)} --resume"


def _evaluate(args: argparse.Namespace) -> None:
    from litemeta.checkpoint import find_checkpoint
    from litemeta.experiment import load_experiment
    from litemeta.experiment.jobs import evaluate_experiment

    checkpoint = find_checkpoint(args.checkpoint) if args.checkpoint else None
    config_name = args.config or _run_settings(checkpoint) or "default"
    config = load_experiment(config_name, args.overrides)
    results = evaluate_experiment(
        config,
        checkpoint=checkpoint,
        split=args.split,
        num_tasks=args.tasks,
        output_dir=args.output,
    )
    _print_results(results)


def _run_settings(checkpoint: Path | None) -> str | None:
    """The ``experiment.yaml`` of the run ``checkpoint`` belongs to, if there is one."""
    from litemeta.experiment.jobs import EXPERIMENT_FILE

    saved = checkpoint.parent / EXPERIMENT_FILE if checkpoint is not None else None
    if saved is None or not saved.is_file():
        return None
    print(f"settings of the run: {saved} (--config to use others)", file=sys.stderr)
    return str(saved)


def _printable(path: str) -> str:
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
            path = _printable(prediction.path)
            print(f"{path}\t{prediction.label}\t{prediction.probability:.3f}")
    for prediction in skipped:
        print(f"skipped unreadable image: {prediction.error}", file=sys.stderr)
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s), listed above", file=sys.stderr)
    if args.output:
        print(f"wrote predictions.csv and predictions.json to {args.output}")


def _require_serve_extra(command: str) -> None:
    import importlib.util

    missing = [
        m for m in ("fastapi", "uvicorn", "multipart", "onnx") if not importlib.util.find_spec(m)
    ]
    if missing:
        raise RuntimeError(
            f"`litemeta {command}` needs {', '.join(missing)}: pip install 'litemeta[serve]'"
        )


def _serve(args: argparse.Namespace) -> None:
    _require_serve_extra("serve")
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
    _require_serve_extra("export")
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
        type=_backbone,
        default=None,
        help="the litemeta backbone (default: tf_efficientnet_b0 for lite, "
        "timm:tf_efficientnet_b0 for orbit)",
    )
    convert.add_argument(
        "--image-size",
        type=_positive_int,
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


def _upload_megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MB, got {text!r}") from None
    if not 1 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be at least 1 (MB), got {text}")
    return value


def _at_least(minimum: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 (any free port) to 65535, got {text}")
    return value


def _positive_int(text: str) -> int:
    return _at_least(1, text)


def _count(text: str) -> int:
    return _at_least(0, text)


def _add_experiment_arguments(
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


def add_experiment_commands(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="meta-train with LITE, then evaluate on the test split"
    )
    _add_experiment_arguments(train)
    train.add_argument(
        "--resume", action="store_true", help="continue from the output directory's last.pt"
    )
    train.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip evaluating the learner before meta-training",
    )
    train.set_defaults(handler=_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="accuracy with 95%% confidence interval over test tasks"
    )
    _add_experiment_arguments(
        evaluate, None, "the experiment.yaml of the run --checkpoint belongs to, else default"
    )
    evaluate.add_argument(
        "--checkpoint",
        default=None,
        help="a checkpoint or training output directory (default: the pretrained model)",
    )
    evaluate.add_argument("--split", default=None, help="split to evaluate (default: test)")
    evaluate.add_argument(
        "--tasks",
        type=_positive_int,
        default=None,
        help="number of test tasks (default: evaluation.tasks of the config)",
    )
    evaluate.add_argument("--output", default=None, help="write results.json/.md/.png here")
    evaluate.set_defaults(handler=_evaluate)

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
        "--port", type=_port, default=8000, help="port, 0 for any free one (default: %(default)s)"
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
        type=_upload_megabytes,
        default=20,
        help="largest request body (default: %(default)s)",
    )
    serve.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=None,
        help="images per forward pass when teaching (default: 16 on a CPU, the learner's "
        "default on a GPU)",
    )
    serve.set_defaults(handler=_serve)

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


def _step_grid(args: argparse.Namespace) -> Grid:
    from litemeta.bench.step import StepConfig
    from litemeta.bench.sweep import Grid
    from litemeta.device import pick_device

    uneven = [n for n in args.support if n % args.way]
    if uneven:
        raise ValueError(
            f"--support {uneven[0]} is not a multiple of --way {args.way}: give support "
            "sizes that are (N / way shots per class)"
        )

    template = StepConfig(
        learner=args.learners[0],
        image_size=args.sizes[0],
        support=args.way,
        mode="inference",
        way=args.way,
        queries_per_class=args.queries_per_class,
        query_batch_size=args.query_batch_size,
        chunk_size=args.chunk_size or StepConfig.chunk_size,
        backbone=args.backbone,
        pretrained=not args.no_pretrained,
        device=args.device or str(pick_device()),
        threads=args.threads,
        precision=args.precision,
    )
    return Grid(args.learners, args.sizes, args.support, args.modes, template)


def _output(args: argparse.Namespace) -> Path:
    return Path(args.out or f"runs/bench/{args.bench_command}")


def _bench_memory(args: argparse.Namespace) -> None:
    from litemeta.bench.memory import run_memory_benchmark

    print(run_memory_benchmark(_step_grid(args), _output(args)))


def _bench_speed(args: argparse.Namespace) -> None:
    from litemeta.bench.speed import run_speed_benchmark

    print(run_speed_benchmark(_step_grid(args), _output(args), repeats=args.repeats))


def _bench_fit(args: argparse.Namespace) -> None:
    from litemeta.bench.fit import FitGrid, run_fit, run_fit_check

    grid = FitGrid(
        budgets=list(dict.fromkeys(args.budget)),
        learners=list(dict.fromkeys(args.learners)),
        backbones=list(dict.fromkeys(args.backbones)),
        sizes=list(dict.fromkeys(args.sizes)),
        way=args.way,
        query_batch_size=args.query_batch_size,
        precision=args.precision,
        device=args.device or "cpu",
    )
    output = Path(args.out or "runs/bench/fit")
    print(run_fit_check(grid, output) if args.check else run_fit(grid, output))


def _bench_gradient(args: argparse.Namespace) -> None:
    from litemeta.bench.gradient import run_gradient_benchmark
    from litemeta.bench.real_tasks import emoji_test_tasks
    from litemeta.lite import check_h

    support = args.way * args.shot  # N = --way x --shot
    check_h(max(args.h), name="--h", set_size=support)
    (task,) = emoji_test_tasks(1, args.way, args.shot, args.queries, args.size, seed=args.seed)
    table = run_gradient_benchmark(
        args.learners,
        task,
        [*args.h, support],
        _output(args),
        image_size=args.size,
        backbone=args.backbone,
        pretrained=not args.no_pretrained,
        draws=args.draws,
    )
    print(table)


def _bench_personalise(args: argparse.Namespace) -> None:
    from litemeta.bench.personalise import run_personalise_benchmark
    from litemeta.bench.real_tasks import emoji_test_tasks

    tasks = emoji_test_tasks(
        args.tasks, args.way, args.shot, args.queries, args.size, seed=args.seed
    )
    table = run_personalise_benchmark(
        args.learners,
        tasks,
        _output(args),
        image_size=args.size,
        backbone=args.backbone,
        pretrained=not args.no_pretrained,
    )
    print(table)


def _bench_openset(args: argparse.Namespace) -> None:
    from litemeta.bench.openset import openset_tasks, run_openset_benchmark
    from litemeta.serve.recogniser import Personaliser

    personaliser = (
        Personaliser.pretrained()
        if args.checkpoint is None
        else Personaliser.from_checkpoint(args.checkpoint)
    )
    tasks = openset_tasks(
        args.split, args.tasks, args.way, args.untaught, personaliser.image_size, seed=args.seed
    )
    options = {} if args.threshold is None else {"threshold": args.threshold}
    table = run_openset_benchmark(
        personaliser.learner,
        tasks,
        args.way,
        _output(args),
        model=personaliser.description.model,
        **options,
    )
    print(table)


def _bench_pipeline(args: argparse.Namespace) -> None:
    from litemeta.bench.pipeline import PipelineConfig, run_pipeline_benchmark
    from litemeta.device import pick_device
    from litemeta.experiment import load_experiment

    overrides = [f"model.image_size={args.size}"] if args.size is not None else []
    shape = [(option, key) for option, key in PIPELINE_SHAPE if getattr(args, option) is not None]
    for option, key in shape:
        overrides += ["data.sampler.kind=fixed", f"data.sampler.{key}={getattr(args, option)}"]
    if args.backbone is not None:
        overrides.append(f"model.backbone={args.backbone}")
    if args.no_pretrained:
        overrides.append("model.pretrained=false")
    experiment = load_experiment(args.config, overrides)
    if shape and experiment.data.dataset == "orbit":
        raise ValueError(
            f"--{shape[0][0]} does not apply to orbit tasks, which each user's objects shape: "
            "leave out --way, --shot and --queries"
        )
    config = PipelineConfig(
        experiment=experiment,
        workers=tuple(dict.fromkeys(args.workers)),
        tasks=args.tasks,
        device=args.device or str(pick_device()),
        seed=args.seed,
        model=not args.no_model,
        cache=not args.no_cache,
        decode=not args.no_decode,
        decode_sizes=tuple(dict.fromkeys(args.decode_sizes or [])),
        threads=args.threads,
    )
    print(run_pipeline_benchmark(config, Path(args.out)))


#: The pipeline options that set a fixed-way sampler, and its keys.
PIPELINE_SHAPE = (("way", "way"), ("shot", "shot"), ("queries", "query"))


def _accepted(check: Callable[[str], object], text: str) -> str:
    """``text`` if ``check`` accepts it; its ``ValueError`` as an argparse usage error."""
    try:
        check(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _backbone(name: str) -> str:
    from litemeta.backbones import check_backbone

    return _accepted(check_backbone, name)


def _mode(name: str) -> str:
    from litemeta.bench.step import parse_mode

    return _accepted(parse_mode, name)


def _device(text: str) -> str:
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


def _add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", type=_device, default=None, help="cpu or cuda (default: cuda when available)"
    )


def _add_learners_argument(parser: argparse.ArgumentParser, default: Sequence[str]) -> None:
    from litemeta.learners import LEARNERS

    parser.add_argument("--learners", nargs="+", choices=sorted(LEARNERS), default=list(default))


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    from litemeta.backbones import DEFAULT_BACKBONE

    parser.add_argument(
        "--backbone", type=_backbone, default=DEFAULT_BACKBONE, help="backbone name"
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


def _add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    from litemeta.bench.step import MODES
    from litemeta.bench.sweep import GRID_LEARNERS, IMAGE_SIZES, SUPPORT_SIZES
    from litemeta.precision import PRECISIONS

    _add_learners_argument(parser, GRID_LEARNERS)
    parser.add_argument("--sizes", nargs="+", type=_positive_int, default=list(IMAGE_SIZES))
    parser.add_argument(
        "--support",
        nargs="+",
        type=_positive_int,
        default=list(SUPPORT_SIZES),
        help="support sizes N",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        type=_mode,
        default=list(MODES),
        help="inference, backprop, checkpoint, lite-<h>, lite-<h>-fused (the drawn rows in "
        "the last query batch's pass) (default: %(default)s)",
    )
    parser.add_argument(
        "--way", type=_positive_int, default=10, help="classes per task (N / way shots)"
    )
    parser.add_argument("--queries-per-class", type=_positive_int, default=2)
    parser.add_argument("--query-batch-size", type=_positive_int, default=10)
    parser.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=None,
        help="images per pass without autograd (default: the learner's, 64)",
    )
    _add_device_argument(parser)
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="torch threads per configuration's process",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="as training.precision (default: auto, bf16 autocast on a GPU, fp32 on the CPU)",
    )
    _add_model_arguments(parser)


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    from litemeta.bench.fit import FIT_BACKBONES, FIT_LEARNERS, FIT_SIZES

    parser.add_argument(
        "--budget", nargs="+", type=_positive_float, required=True, help="budgets in GiB"
    )
    _add_learners_argument(parser, FIT_LEARNERS)
    parser.add_argument(
        "--backbones", nargs="+", type=_backbone, default=list(FIT_BACKBONES), help="backbones"
    )
    parser.add_argument("--sizes", nargs="+", type=_positive_int, default=list(FIT_SIZES))
    parser.add_argument("--way", type=_positive_int, default=10, help="classes per task")
    parser.add_argument("--query-batch-size", type=_positive_int, default=10)
    parser.add_argument(
        "--precision", choices=["fp32", "bf16"], default="fp32", help="(default: fp32)"
    )
    _add_device_argument(parser)
    parser.add_argument(
        "--check",
        action="store_true",
        help="instead of the table, plan h: auto under each budget and measure one real step "
        "at the plan's sizes (fit-check.md)",
    )
    parser.add_argument("--out", default=None, help="output directory (default runs/bench/fit)")


def _add_emoji_task_arguments(
    parser: argparse.ArgumentParser, learners: Sequence[str], way: int
) -> None:
    _add_learners_argument(parser, learners)
    parser.add_argument(
        "--size", type=_positive_int, default=84, help="image side in pixels (default 84)"
    )
    parser.add_argument("--way", type=_positive_int, default=way)
    parser.add_argument("--shot", type=_positive_int, default=5)
    parser.add_argument("--queries", type=_positive_int, default=2, help="queries per class")
    parser.add_argument("--seed", type=int, default=0, help="which emoji test tasks")
    _add_model_arguments(parser)


def add_bench_commands(subparsers: argparse._SubParsersAction) -> None:
    from litemeta.bench.personalise import personalise_learners
    from litemeta.bench.sweep import GRID_LEARNERS

    bench = subparsers.add_parser(
        "bench",
        help="benchmarks: memory, speed, what fits a budget, gradient fidelity, personalisation "
        "cost, open set, data pipeline",
    )
    commands = bench.add_subparsers(dest="bench_command", required=True)

    memory = commands.add_parser(
        "memory", help="peak memory of a meta-training step against support size"
    )
    _add_grid_arguments(memory)
    memory.set_defaults(handler=_bench_memory)

    speed = commands.add_parser("speed", help="seconds per meta-training step")
    _add_grid_arguments(speed)
    speed.add_argument(
        "--repeats", type=_positive_int, default=3, help="timed steps after a warm-up"
    )
    speed.set_defaults(handler=_bench_speed)

    fit = commands.add_parser(
        "fit", help="the largest N (full back-propagation) and h (LITE) that fit a budget"
    )
    _add_fit_arguments(fit)
    fit.set_defaults(handler=_bench_fit)

    gradient = commands.add_parser(
        "gradient", help="LITE gradient against the exact one on a real emoji task"
    )
    _add_emoji_task_arguments(gradient, GRID_LEARNERS, way=20)
    gradient.add_argument(
        "--h",
        nargs="+",
        type=_positive_int,
        default=[1, 8, 40],
        help="subset sizes, at most N = way x shot (N is added)",
    )
    gradient.add_argument(
        "--draws", type=_positive_int, default=20, help="LITE draws per subset size"
    )
    gradient.set_defaults(handler=_bench_gradient)

    personalise = commands.add_parser(
        "personalise", help="time, MACs, numbers learned and accuracy of personalising"
    )
    _add_emoji_task_arguments(personalise, personalise_learners(), way=10)
    personalise.add_argument("--tasks", type=_positive_int, default=20, help="emoji test tasks")
    personalise.set_defaults(handler=_bench_personalise)

    openset = commands.add_parser(
        "openset",
        help='how well "none of these" rejects untaught emoji classes, and the int8 export',
    )
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
    openset.add_argument("--tasks", type=_positive_int, default=40, help="tasks (default 40)")
    openset.add_argument("--way", type=_positive_int, default=5, help="taught classes (5)")
    openset.add_argument(
        "--untaught", type=_positive_int, default=5, help="untaught classes per task (5)"
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
    openset.set_defaults(handler=_bench_openset)

    pipeline = commands.add_parser(
        "pipeline",
        help="tasks/s and images/s the data pipeline delivers, alone and feeding LITE steps",
    )
    pipeline.add_argument(
        "--config",
        default="default",
        help="a YAML file or shipped config whose data, model and LITE settings are used "
        "(default: default)",
    )
    pipeline.add_argument(
        "--workers", nargs="+", type=_count, default=[0, 1, 2], help="loader worker counts"
    )
    pipeline.add_argument(
        "--size",
        type=_positive_int,
        default=None,
        help="model image side in pixels (default: the config's model.image_size)",
    )
    pipeline.add_argument(
        "--tasks", type=_positive_int, default=40, help="tasks drawn per measurement"
    )
    pipeline.add_argument(
        "--way", type=_positive_int, default=None, help="classes per task (default: config)"
    )
    pipeline.add_argument(
        "--shot", type=_positive_int, default=None, help="shots (default: config)"
    )
    pipeline.add_argument(
        "--queries", type=_positive_int, default=None, help="queries per class (default: config)"
    )
    pipeline.add_argument("--seed", type=int, default=0, help="which tasks")
    _add_device_argument(pipeline)
    pipeline.add_argument(
        "--backbone", type=_backbone, default=None, help="backbone name (default: the config's)"
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
        type=_positive_int,
        default=None,
        help="torch threads of the consuming process",
    )
    pipeline.add_argument(
        "--decode-sizes",
        nargs="+",
        type=_positive_int,
        default=None,
        help="sizes for the stored-size against CPU-resize rows (default: --size and 224)",
    )
    pipeline.add_argument(
        "--out", default="runs/bench/pipeline", help="output directory (default: %(default)s)"
    )
    pipeline.set_defaults(handler=_bench_pipeline)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="litemeta", description="Meta-train few-shot image classifiers with LITE."
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of an error (also {DEBUG_VARIABLE}=1; accepted anywhere)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_experiment_commands(subparsers)
    add_data_commands(subparsers)
    add_bench_commands(subparsers)
    add_convert_commands(subparsers)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; ``key=value`` overrides may come before, between or after flags."""
    args, extra = parser.parse_known_args(argv)
    unknown = [a for a in extra if a.startswith("-") or "=" not in a]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


#: Errors that carry a message meant for the user; anything else is reported with its type.
_EXPECTED = (OSError, ValueError, RuntimeError, LookupError)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, _EXPECTED) and text:
        return text
    name = type(error).__name__
    return f"{name}: {text} (rerun with --debug for the traceback)" if text else name


def _hint(error: Exception, args: argparse.Namespace) -> str:
    """What the command offers for an unreadable image, after its message (not when it was
    already skipping them)."""
    from litemeta.data.images import ImageLoadError, NoReplacementError

    hint = getattr(args, "unreadable_hint", None)
    unreadable = isinstance(error, ImageLoadError) and not isinstance(error, NoReplacementError)
    return f" ({hint})" if hint and unreadable else ""


def _one_line_warning(message: Warning | str, *_where: object, **_line: object) -> str:
    return f"litemeta: warning: {' '.join(str(message).split())}\n"


class Terminated(KeyboardInterrupt):
    """``SIGTERM`` (``kill``, a scheduler ending a job), raised like Ctrl-C so that every
    ``finally`` runs: loader workers stop, the output directory's lock is released."""


def _raise_on_sigterm() -> Callable[[], None]:
    """Turn ``SIGTERM`` into :class:`Terminated` in this process (a forked loader worker
    still dies of it at once); returns what puts the previous handler back."""
    owner = os.getpid()

    def terminate(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it outright
        if os.getpid() != owner:
            os.kill(os.getpid(), signum)
            return
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. An error prints one line (``litemeta: error: ...``) and returns 1,
    Ctrl-C returns 130 and ``SIGTERM`` 143; with ``--debug`` or ``LITEMETA_DEBUG=1`` the
    traceback is shown."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    args = _parse(build_parser(), [a for a in argv if a != "--debug"])
    library_format = warnings.formatwarning
    if not debug:  # one line, like the errors; --debug keeps where the warning came from
        warnings.formatwarning = _one_line_warning
    restore_sigterm = _raise_on_sigterm()
    try:
        args.handler(args)
    except KeyboardInterrupt as interrupt:
        if debug:
            raise
        detail = " ".join(str(interrupt).split())
        terminated = isinstance(interrupt, Terminated)
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"litemeta: {what}{': ' + detail if detail else ''}", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as error:
        if debug:
            raise
        print(f"litemeta: error: {_one_line(error)}{_hint(error, args)}", file=sys.stderr)
        return 1
    finally:
        restore_sigterm()
        warnings.formatwarning = library_format
    return 0


if __name__ == "__main__":
    sys.exit(main())
