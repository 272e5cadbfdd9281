"""How fast the data pipeline delivers tasks, and how long a meta-training step waits for them.

Tasks are built exactly as training builds them (:func:`litemeta.experiment.task_dataset`
from an experiment config) and delivered by :func:`litemeta.data.loading.task_loader` with
0..k worker processes. Measured:

- ``loader``: tasks/s and images/s of the loader alone (tasks copied to the device);
- ``loader + step``: the same tasks, each consumed by one LITE meta-training step
  (:class:`litemeta.training.TaskStep`, as in Bronskill et al., "Memory Efficient
  Meta-Learning with Large Images", NeurIPS 2021), with the share of wall time spent
  blocked waiting for the next task;
- ``cache``: repeated emoji tasks (the same indices drawn twice, the first pass filling the
  cache) with the decoded-image cache on and off. Target: the cache makes them at least
  3x faster to produce;
- ``decode``: emoji tasks decoded at their stored size and resized on the device, against
  decoded and resized on the CPU.

Each timed interval includes starting the loader's worker processes. On CUDA, tasks come
in pinned memory, are copied with ``non_blocking=True``, and the device is synchronised
before every clock reading.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from litemeta.backbones.preprocessing import normalise_images
from litemeta.data.loading import check_workers, task_loader
from litemeta.device import Stopwatch, synchronize
from litemeta.evaluation import markdown_table
from litemeta.experiment import DataConfig, ExperimentConfig, build_model, task_dataset
from litemeta.tasks import Task
from litemeta.training import TaskStep

from .report import Row, machine_description

__all__ = ["CACHE_SPEEDUP_TARGET", "PipelineConfig", "measure_pipeline", "run_pipeline_benchmark"]

#: Decoded-image caching should make repeated emoji tasks at least this much faster.
CACHE_SPEEDUP_TARGET = 3.0

TaskSource = Dataset[Task] | list[Task]

#: The dataset of the cache and decode rows when the experiment's images are not decoded at
#: one stored size: the built-in emoji set.
REFERENCE_DATASET = "emoji"

#: The backbones' input normalisation (EfficientNet-Lite: mean = std = 0.5).
_HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline benchmark runs.

    ``experiment`` supplies the data (dataset, sampler, styles, cache setting), the model
    (its ``image_size`` is the tasks' and the step's) and the LITE settings. ``workers``
    lists the loader worker counts to compare; ``tasks`` tasks are drawn per measurement.
    ``model=False`` skips the rows where a meta-training step consumes the tasks; ``cache``
    and ``decode`` the other two comparisons. ``decode_sizes`` are the sizes at which the
    decode comparison resizes (default: the model's image size and 224). ``threads`` sets
    torch's intra-op threads in this process (loader workers use one each).
    """

    experiment: ExperimentConfig
    workers: tuple[int, ...] = (0, 1, 2)
    tasks: int = 40
    device: str = "cpu"
    seed: int = 0
    model: bool = True
    cache: bool = True
    decode: bool = True
    decode_sizes: tuple[int, ...] = ()
    threads: int | None = None

    def __post_init__(self) -> None:
        if not self.workers:
            raise ValueError("workers must list at least one count of loader processes")
        for count in self.workers:
            check_workers(count, "--workers", allow_auto=False)
        if self.tasks < 1:
            raise ValueError(f"tasks must be at least 1, got {self.tasks}")

    @property
    def image_size(self) -> int:
        """The model's image size, at which the tasks are made."""
        return self.experiment.model.image_size


def _images(task: Task) -> int:
    return task.support_labels.numel() + task.query_labels.numel()


def _deliver(
    tasks: TaskSource,
    indices: Sequence[int],
    workers: int,
    device: torch.device,
    consume: Callable[[Task], None] | None = None,
) -> Row:
    """Draw ``indices`` through a loader onto ``device``, optionally consuming each task;
    time the whole run and the part spent blocked on the next task."""
    clock = Stopwatch(device)
    loader = task_loader(tasks, indices, workers=workers, pin_memory=device.type == "cuda")
    waited, count, images, first = 0.0, 0, 0, None
    for _ in indices:
        before = clock.elapsed()  # once the previous task's step has finished
        task = next(loader).to(device, non_blocking=True)
        after = clock.elapsed()
        waited += after - before
        first = after if first is None else first
        count += 1
        images += _images(task)
        if consume is not None:
            consume(task)
    seconds = clock.elapsed()
    return {
        "workers": workers,
        "tasks": count,
        "images": images,
        "seconds": seconds,
        "tasks_per_second": count / seconds,
        "images_per_second": images / seconds,
        "wait_seconds": waited,
        "wait_fraction": waited / seconds,
        "first_task_seconds": first,
    }


def _experiment_tasks(config: PipelineConfig, data: DataConfig | None = None) -> TaskSource:
    """A fresh task dataset (so no decoded-image cache carries over between rows)."""
    data = data or config.experiment.data
    return task_dataset(data, data.train_split, config.tasks, config.image_size, seed=config.seed)


def _step_function(config: PipelineConfig, device: torch.device) -> Callable[[Task], None]:
    """One LITE meta-training step per task, with the experiment's model and settings."""
    experiment = config.experiment
    learner = build_model(experiment.model).to(device).train()
    generator = torch.Generator(device=device).manual_seed(config.seed)
    task_step = TaskStep.of(
        experiment.training.lite, query_batch_size=experiment.training.query_batch_size
    )

    def step(task: Task) -> None:
        task_step.queue(learner, task, generator).read()
        learner.zero_grad(set_to_none=True)

    return step


def _emoji_data(config: PipelineConfig, cache: bool) -> DataConfig:
    """The experiment's data where its images are decoded at one stored size (the emoji
    set's), else the built-in emoji set with the experiment's sampler; the cache set."""
    data = config.experiment.data
    if not data.kind.decode_at_stored_size:
        data = DataConfig(dataset=REFERENCE_DATASET, sampler=data.sampler)
    return dataclasses.replace(data, cache_decoded=cache)


def _cache_rows(config: PipelineConfig, device: torch.device) -> list[Row]:
    """Second pass over the same emoji tasks, with and without the decoded-image cache."""
    rows = []
    indices = list(range(config.tasks))
    for cache in (False, True):
        tasks = _experiment_tasks(config, _emoji_data(config, cache))
        _deliver(tasks, indices, 0, device)  # first pass: fills the cache when it is on
        row = _deliver(tasks, indices, 0, device)
        rows.append({"measurement": "cache", "setting": f"cache {'on' if cache else 'off'}", **row})
    rows[1]["speedup"] = rows[0]["seconds"] / rows[1]["seconds"]
    return rows


def _decode_rows(config: PipelineConfig, device: torch.device) -> list[Row]:
    """Emoji tasks at their stored size resized on ``device``, against resized on the CPU
    as they are decoded, for each of ``config.decode_sizes``.

    Both are timed until the images are normalised on ``device`` at that size, as the
    backbone's preprocessing does; the cache is off, so every image is decoded."""
    mean = torch.tensor(_HALF, device=device)
    rows = []
    indices = list(range(config.tasks))
    data = _emoji_data(config, cache=False)
    stored = _experiment_tasks(config, data)[0].support_images.shape[-1]
    for size in config.decode_sizes or tuple(dict.fromkeys((config.image_size, 224))):

        def ready(task: Task, size: int = size) -> None:
            for images in (task.support_images, task.query_images):
                normalise_images(images, size, mean, mean)

        for on_device in (True, False):
            dataset = _experiment_tasks(config, data)
            if on_device:
                setting = f"stored {stored} px, resized to {size} on {device.type} (model)"
            else:
                dataset.collection.decode_size = size  # type: ignore[attr-defined]  # by PIL
                setting = f"resized to {size} px as decoded (cpu)"
            row = _deliver(dataset, indices, 0, device, consume=ready)
            rows.append({"measurement": "decode", "setting": setting, "size": size, **row})
    return rows


def measure_pipeline(config: PipelineConfig, *, progress: bool = True) -> list[Row]:
    """All rows of the benchmark (see the module docstring), raw numbers."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    indices = list(range(config.tasks))
    say = print if progress else (lambda *_: None)
    rows: list[Row] = []
    _experiment_tasks(config)[0]  # warm-up: the first decode, lazy imports
    for workers in config.workers:
        say(f"loader, {workers} workers")
        row = _deliver(_experiment_tasks(config), indices, workers, device)
        rows.append({"measurement": "loader", "setting": f"{workers} workers", **row})
    if config.model:
        step = _step_function(config, device)
        warm_up = _experiment_tasks(config)[0].to(device)
        step(warm_up)
        synchronize(device)
        for workers in config.workers:
            say(f"loader + step, {workers} workers")
            row = _deliver(_experiment_tasks(config), indices, workers, device, consume=step)
            rows.append({"measurement": "loader + step", "setting": f"{workers} workers", **row})
    if config.cache:
        say("decoded-image cache off / on")
        rows += _cache_rows(config, device)
    if config.decode:
        say("decode at stored size / resize on the cpu")
        rows += _decode_rows(config, device)
    return rows


def _table_row(row: Row) -> Row:
    waits = row["measurement"] == "loader + step"
    return {
        "measurement": row["measurement"],
        "setting": row["setting"],
        "tasks": row["tasks"],
        "images": row["images"],
        "seconds": row["seconds"],
        "tasks/s": row["tasks_per_second"],
        "images/s": row["images_per_second"],
        "first task s": row["first_task_seconds"],
        "waiting for data": f"{row['wait_fraction']:.0%}" if waits else "",
        "speed-up": row.get("speedup"),
    }


def cache_verdict(rows: Sequence[Row]) -> str | None:
    """One line on the cache target, if the cache rows were measured."""
    speedups = [r["speedup"] for r in rows if r.get("speedup") is not None]
    if not speedups:
        return None
    met = "met" if speedups[0] >= CACHE_SPEEDUP_TARGET else "NOT met"
    return (
        f"- decoded-image cache: repeated emoji tasks {speedups[0]:.1f}x faster to produce "
        f"than decoding each time (target >= {CACHE_SPEEDUP_TARGET:g}x: {met})"
    )


def pipeline_table(config: PipelineConfig, rows: Sequence[Row]) -> str:
    """The markdown report: settings line, table, the cache verdict."""
    experiment = config.experiment
    data = experiment.data
    lite = experiment.training.lite
    header = (
        f"Data pipeline: {config.tasks} {data.dataset} {data.train_split} tasks "
        f"({data.kind.task_shape(data)}) per row, model at {config.image_size} px on "
        f"{config.device}"
    )
    if config.model:
        header += (
            f"; step = LITE h = {lite.h} meta-training step of {experiment.model.learner} "
            f"on {experiment.model.backbone}"
        )
    if (config.cache or config.decode) and not data.kind.decode_at_stored_size:
        emoji = _emoji_data(config, cache=False)
        header += (
            f". The cache and decode rows use the built-in emoji set instead "
            f"({emoji.kind.task_shape(emoji)})"
        )
    header += f". Machine: {machine_description()}.\n\n"
    verdict = cache_verdict(rows)
    return (
        header
        + markdown_table([_table_row(r) for r in rows])
        + (f"\n{verdict}\n" if verdict else "")
    )


def run_pipeline_benchmark(config: PipelineConfig, output: Path, *, progress: bool = True) -> str:
    """Measure, write ``pipeline.md`` (table) and ``pipeline.json`` (raw numbers and
    settings) into ``output``; return the table."""
    rows = measure_pipeline(config, progress=progress)
    table = pipeline_table(config, rows)
    output.mkdir(parents=True, exist_ok=True)
    (output / "pipeline.md").write_text(table)
    settings = dataclasses.asdict(config)
    settings["workers"] = list(config.workers)
    settings["decode_sizes"] = list(config.decode_sizes)
    raw = {"machine": machine_description(), "settings": settings, "rows": rows}
    (output / "pipeline.json").write_text(json.dumps(raw, indent=2) + "\n")
    return table
