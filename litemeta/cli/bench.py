"""``litemeta bench``: one sub-command per benchmark of :mod:`litemeta.bench`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from litemeta.cli.arguments import positive_int
from litemeta.cli.bench_arguments import (
    add_emoji_task_arguments,
    add_fit_arguments,
    add_grid_arguments,
    add_openset_arguments,
    add_pipeline_arguments,
)

if TYPE_CHECKING:
    from litemeta.bench.sweep import Grid


#: The pipeline options that set a fixed-way sampler, and its keys.
PIPELINE_SHAPE = (("way", "way"), ("shot", "shot"), ("queries", "query"))


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
    data = experiment.data
    if shape and not data.kind.episodic:
        raise ValueError(
            f"--{shape[0][0]} does not apply to {data.dataset} tasks "
            f"({data.kind.task_shape(data)}): leave out --way, --shot and --queries"
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
    add_grid_arguments(memory)
    memory.set_defaults(handler=_bench_memory)

    speed = commands.add_parser("speed", help="seconds per meta-training step")
    add_grid_arguments(speed)
    speed.add_argument(
        "--repeats", type=positive_int, default=3, help="timed steps after a warm-up"
    )
    speed.set_defaults(handler=_bench_speed)

    fit = commands.add_parser(
        "fit", help="the largest N (full back-propagation) and h (LITE) that fit a budget"
    )
    add_fit_arguments(fit)
    fit.set_defaults(handler=_bench_fit)

    gradient = commands.add_parser(
        "gradient", help="LITE gradient against the exact one on a real emoji task"
    )
    add_emoji_task_arguments(gradient, GRID_LEARNERS, way=20)
    gradient.add_argument(
        "--h",
        nargs="+",
        type=positive_int,
        default=[1, 8, 40],
        help="subset sizes, at most N = way x shot (N is added)",
    )
    gradient.add_argument(
        "--draws", type=positive_int, default=20, help="LITE draws per subset size"
    )
    gradient.set_defaults(handler=_bench_gradient)

    personalise = commands.add_parser(
        "personalise", help="time, MACs, numbers learned and accuracy of personalising"
    )
    add_emoji_task_arguments(personalise, personalise_learners(), way=10)
    personalise.add_argument("--tasks", type=positive_int, default=20, help="emoji test tasks")
    personalise.set_defaults(handler=_bench_personalise)

    openset = commands.add_parser(
        "openset",
        help='how well "none of these" rejects untaught emoji classes, and the int8 export',
    )
    add_openset_arguments(openset)
    openset.set_defaults(handler=_bench_openset)

    pipeline = commands.add_parser(
        "pipeline",
        help="tasks/s and images/s the data pipeline delivers, alone and feeding LITE steps",
    )
    add_pipeline_arguments(pipeline)
    pipeline.set_defaults(handler=_bench_pipeline)
