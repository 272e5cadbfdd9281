"""``litemeta train`` and ``litemeta evaluate``: an experiment file's jobs."""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from pathlib import Path

from litemeta.cli.arguments import add_experiment_arguments, positive_int


def print_results(results: dict) -> None:
    from litemeta.evaluation import results_table

    if results:
        print(results_table(results))


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
        print_results(results)
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
    config_name = args.config or run_settings(checkpoint) or "default"
    config = load_experiment(config_name, args.overrides)
    results = evaluate_experiment(
        config,
        checkpoint=checkpoint,
        split=args.split,
        num_tasks=args.tasks,
        output_dir=args.output,
    )
    print_results(results)


def run_settings(checkpoint: Path | None) -> str | None:
    """The ``experiment.yaml`` of the run ``checkpoint`` belongs to, if there is one."""
    from litemeta.evaluation.trained import EXPERIMENT_FILE

    saved = checkpoint.parent / EXPERIMENT_FILE if checkpoint is not None else None
    if saved is None or not saved.is_file():
        return None
    print(f"settings of the run: {saved} (--config to use others)", file=sys.stderr)
    return str(saved)


def add_experiment_commands(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="meta-train with LITE, then evaluate on the test split"
    )
    add_experiment_arguments(train)
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
    add_experiment_arguments(
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
        type=positive_int,
        default=None,
        help="number of test tasks (default: evaluation.tasks of the config)",
    )
    evaluate.add_argument("--output", default=None, help="write results.json/.md/.png here")
    evaluate.set_defaults(handler=_evaluate)
