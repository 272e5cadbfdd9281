"""The jobs behind the command line: meta-train, evaluate, personalise.

Each job takes an :class:`~litemeta.experiment.settings.ExperimentConfig` (or plain paths)
and wires the data, learner, training and evaluation layers together; ``litemeta.cli`` only
parses.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch.utils.data import Dataset

from litemeta.checkpoint import load_model_weights, write_files_atomically
from litemeta.config import ConfigError, load_yaml, setting_differences
from litemeta.data.images import IMAGE_EXTENSIONS
from litemeta.data.loading import resolve_workers
from litemeta.data.support_folder import SkippedImage, folder_images, read_image_or_skip
from litemeta.device import pick_device, place_on_device
from litemeta.evaluation import EvaluationResult, evaluate, write_report
from litemeta.evaluation.trained import EXPERIMENT_FILE, adapt_checkpoint, adapt_in_one_pass
from litemeta.experiment.builders import (
    build_model,
    max_support_size,
    task_dataset,
    with_unknown_classes,
)
from litemeta.experiment.settings import ExperimentConfig
from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.tasks import Task
from litemeta.training import (
    Trainer,
    check_output_directory_free,
    hold_output_directory,
    seed_everything,
    torchrun_environment,
)
from litemeta.training.memory_plan import first_task, plan_evaluation_run

__all__ = [
    "Prediction",
    "baseline_name",
    "evaluate_experiment",
    "personalise",
    "train_experiment",
]

BASELINE = "pretrained, no meta-training"
#: The baseline's name when the backbone starts from random weights.
UNTRAINED_BASELINE = "random weights, no meta-training"
META_TRAINED = "meta-trained with LITE"


def _test_tasks(
    config: ExperimentConfig, split: str, num_tasks: int | None
) -> Dataset[Task] | list[Task]:
    """The test tasks, loaded one at a time as evaluation reaches them."""
    return task_dataset(
        config.data,
        split,
        num_tasks or config.evaluation.tasks,
        config.model.image_size,
        seed=config.evaluation.seed,
    )


def _evaluate(
    learner: BackboneLearner, tasks: Iterable[Task], config: ExperimentConfig, name: str
) -> EvaluationResult:
    device = pick_device(torchrun_environment().local_rank)
    place_on_device(learner, device)
    if config.evaluation.chunk_size == "auto":
        plan = plan_evaluation_run(
            learner,
            first_task(tasks).to(device),
            memory_budget=config.training.memory_budget,
            query_batch_size=config.evaluation.query_batch_size,
            precision=config.training.precision,
        )
        print(plan.describe())
    elif config.evaluation.chunk_size is not None:
        learner.chunk_size = config.evaluation.chunk_size
    return evaluate(
        learner,
        tasks,
        query_batch_size=config.evaluation.query_batch_size,
        precision=config.training.precision,
        description=f"evaluating {name}",
        device=device,
        workers=resolve_workers(config.data.workers, device),
    )


def _tune_cuda(config: ExperimentConfig) -> None:
    """Let cuDNN pick the fastest convolution per input shape as ``training.cudnn_benchmark``
    says; by default when shapes repeat (fixed-way tasks): variable-way episodes would make
    it benchmark every new shape."""
    benchmark = config.training.cudnn_benchmark
    if benchmark is None:
        benchmark = config.data.sampler.kind == "fixed"
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = benchmark


def _warn_about_full_backpropagation(config: ExperimentConfig) -> None:
    h, largest = config.training.lite.h, max_support_size(config.data)
    if isinstance(h, int) and largest is not None and h >= largest:
        warnings.warn(
            f"training.lite.h={h} is at least the largest support set ({largest} images): "
            "every support image is back-propagated, which is full back-propagation, not "
            "LITE; lower h to save memory, or set it to null to say so",
            stacklevel=3,
        )


def baseline_name(config: ExperimentConfig) -> str:
    """What the learner is before meta-training: a pretrained or a randomly initialised
    backbone with the learner's classifier."""
    pretrained = config.model.pretrained or config.model.weights_file is not None
    return BASELINE if pretrained else UNTRAINED_BASELINE


def _warn_about_changed_settings(config: ExperimentConfig, saved_file: Path) -> None:
    """Name the data settings a resumed run changes: the tasks after the checkpoint then
    differ from those the run would have seen (the trainer names changed training settings;
    a changed model is refused)."""
    if not saved_file.is_file():
        return
    try:
        saved = load_yaml(saved_file.read_text(), str(saved_file)) or {}
    except ConfigError as error:
        raise ConfigError(f"{error}; fix it, or delete it (the run writes it again)") from None
    if not isinstance(saved, dict):
        raise ConfigError(
            f"{saved_file} holds no mapping of settings: fix it, or delete it (the run writes "
            "it again)"
        )
    changed = [
        f"data.{key}: {before!r} -> {after!r}"
        for key, (before, after) in setting_differences(
            saved.get("data", {}), config.to_dict()["data"]
        ).items()
    ]
    if changed:
        warnings.warn(
            f"resuming with changed data settings ({'; '.join(changed)}): the tasks from here "
            f"on differ from those the run would have seen; {saved_file} will record the new "
            "ones",
            stacklevel=3,
        )


def _check_stratified_draws(config: ExperimentConfig) -> None:
    """Refuse now what the first step would: stratified LITE draws one row per class."""
    lite, sampler = config.training.lite, config.data.sampler
    fixed_way = config.data.kind.episodic and sampler.kind == "fixed"
    if lite.stratified and isinstance(lite.h, int) and fixed_way and lite.h < sampler.way:
        raise ConfigError(
            f"training.lite.stratified draws at least one support image per class, so "
            f"training.lite.h={lite.h} must be at least the {sampler.way} classes of a task "
            "(data.sampler.way): raise h, or set stratified to false"
        )


def _warn_about_unused_checkpointing(config: ExperimentConfig) -> None:
    lite = config.training.lite
    if lite.gradient_checkpointing and lite.h is not None:
        warnings.warn(
            f"training.lite.gradient_checkpointing=true does nothing with lite.h={lite.h}: "
            "LITE recomputes and back-propagates the h drawn support images a chunk at a time "
            "after the queries, without checkpoints; checkpointing applies to full "
            "back-propagation only (lite.h: null, or a support set of at most h images)",
            stacklevel=3,
        )


def train_experiment(
    config: ExperimentConfig, *, resume: bool = False, compare_baseline: bool = True
) -> dict[str, EvaluationResult]:
    """Meta-train as ``config`` says, then evaluate the best checkpoint on the test split.

    With ``compare_baseline`` the same learner is also evaluated on the same test tasks
    before meta-training (pretrained features with the learner's classifier), so the
    report shows what meta-training adds. Returns the results by name; the report is
    written to ``<output_dir>/test``.
    """
    output_dir = Path(config.training.output_dir)
    # Under torchrun every process trains; only the first holds the output directory,
    # evaluates and reports.
    launch = torchrun_environment()
    if launch.rank == 0:  # "in use" before what the holder has written
        check_output_directory_free(output_dir)
    config.data.check_trainable()
    _check_stratified_draws(config)
    _warn_about_full_backpropagation(config)
    _warn_about_unused_checkpointing(config)
    seed_everything(config.training.seed)
    _tune_cuda(config)
    learner = build_model(config.model)
    trainer = _trainer(config, learner, resume=resume)  # refuses a run before any work
    if resume:
        _warn_about_changed_settings(config, output_dir / EXPERIMENT_FILE)
    lock = hold_output_directory(output_dir) if launch.rank == 0 else nullcontext()
    with lock:
        return _train_and_test(config, trainer, compare_baseline=compare_baseline)


def _trainer(config: ExperimentConfig, learner: BackboneLearner, *, resume: bool) -> Trainer:
    """The trainer of ``config``'s run, its task streams loaded on demand; building it
    checks the run (:func:`~litemeta.training.check_training_run`)."""
    total_tasks = config.training.steps * config.training.tasks_per_step
    total_tasks *= torchrun_environment().world_size
    image_size = config.model.image_size
    train_tasks = task_dataset(
        config.data, config.data.train_split, total_tasks, image_size, config.training.seed
    )
    train_tasks = with_unknown_classes(train_tasks, config.training.open_set.unknown_classes)
    validation_tasks: Dataset[Task] | list[Task] = []
    if config.training.validate_every and config.data.validation_tasks:
        validation_tasks = task_dataset(
            config.data,
            config.data.validation_split,
            config.data.validation_tasks,
            image_size,
            seed=config.training.seed + 1,
        )
    return Trainer(
        config.training,
        learner,
        train_tasks,
        validation_tasks,
        resume=resume,
        model_config=learner.config(),
        workers=config.data.workers,
    )


def _train_and_test(
    config: ExperimentConfig, trainer: Trainer, *, compare_baseline: bool
) -> dict[str, EvaluationResult]:
    """The work of :func:`train_experiment` once its checks have passed."""
    learner = trainer.learner
    output_dir = Path(config.training.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    evaluate_now = config.evaluation.tasks > 0 and torchrun_environment().rank == 0
    test_tasks = _test_tasks(config, config.data.test_split, None) if evaluate_now else []
    results: dict[str, EvaluationResult] = {}
    if evaluate_now and compare_baseline:  # the learner is still the pretrained one
        name = baseline_name(config)
        results[name] = _evaluate(learner, test_tasks, config, name)
    outcome = trainer.run()
    if evaluate_now:
        best = outcome.best_checkpoint or outcome.last_checkpoint
        load_model_weights(learner, best, learner.config(), withdrawn=learner.withdrawn_settings)
        results[META_TRAINED] = _evaluate(learner, test_tasks, config, META_TRAINED)
        write_report(results, output_dir / "test")
    return results


def evaluate_experiment(
    config: ExperimentConfig,
    *,
    checkpoint: str | Path | None,
    split: str | None = None,
    num_tasks: int | None = None,
    output_dir: str | Path | None = None,
) -> dict[str, EvaluationResult]:
    """Evaluate the learner of ``config`` (meta-trained weights from ``checkpoint``, or the
    pretrained model when it is ``None``) on ``num_tasks`` tasks of ``split``. The learner
    is built after seeding with ``training.seed``, as :func:`train_experiment` builds it, so
    randomly initialised parts give the training run's baseline, run after run."""
    if (num_tasks or config.evaluation.tasks) < 1:
        raise ConfigError("evaluation.tasks is 0: pass --tasks N (N >= 1) to evaluate N tasks")
    if output_dir is not None:  # a bad output folder fails now, not after the evaluation
        Path(output_dir).mkdir(parents=True, exist_ok=True)
    seed_everything(config.training.seed)
    _tune_cuda(config)
    learner = build_model(config.model)
    name = baseline_name(config)
    if checkpoint is not None:
        load_model_weights(
            learner, checkpoint, learner.config(), withdrawn=learner.withdrawn_settings
        )
        name = f"{META_TRAINED} ({Path(checkpoint).name})"
    tasks = _test_tasks(config, split or config.data.test_split, num_tasks)
    results = {name: _evaluate(learner, tasks, config, name)}
    if output_dir is not None:
        write_report(results, output_dir)
    return results


@dataclass(frozen=True)
class Prediction:
    """The label of one query image, or, for an image that was skipped, why."""

    path: str
    label: str
    probability: float
    error: str = ""


def _query_files(folder: Path) -> list[Path]:
    files = folder_images(folder, "query")
    if not files:
        raise ValueError(
            f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in query folder {folder}"
        )
    return files


def personalise(
    checkpoint: str | Path,
    support: str | Path,
    query: str | Path,
    *,
    output_dir: str | Path | None = None,
    batch_size: int = 64,
    skip_unreadable: bool = False,
) -> list[Prediction]:
    """Adapt a meta-trained learner to a user's class folders in one pass and label every
    image of the query folder. Hidden files are ignored. With ``skip_unreadable``, images
    that cannot be read are left out: query images are returned as predictions with an
    ``error``, support images named in a warning; otherwise they raise
    :class:`ImageLoadError`. Writes ``predictions.csv`` and ``predictions.json`` to
    ``output_dir`` when given (checked before any work)."""
    output = _output_folder(output_dir) if output_dir is not None else None
    query_files = _query_files(Path(query))
    personalised = adapt_checkpoint(
        checkpoint, support, adapt_in_one_pass, skip_unreadable=skip_unreadable
    )
    for skipped_image in personalised.support.skipped:
        warnings.warn(f"left out unreadable support image: {skipped_image.error}", stacklevel=2)
    image_size = personalised.learner.backbone.image_size
    device = next(personalised.learner.parameters()).device
    class_names, classifier = personalised.support.classes, personalised.adapted
    predictions: list[Prediction] = []
    unreadable: list[SkippedImage] = []
    with torch.no_grad():
        for start in range(0, len(query_files), batch_size):
            batch, queries = [], []
            for path in query_files[start : start + batch_size]:
                image = read_image_or_skip(path, image_size, skip_unreadable, unreadable)
                if image is not None:
                    queries.append(image)
                    batch.append(path)
            if not batch:
                continue
            probabilities = classifier(torch.stack(queries).to(device)).softmax(-1).cpu()
            for path, row in zip(batch, probabilities, strict=True):
                best = int(row.argmax())
                predictions.append(Prediction(str(path), class_names[best], float(row[best])))
    predictions += [Prediction(str(image.path), "", 0.0, image.error) for image in unreadable]
    if output is not None:
        _write_predictions(predictions, output)
    return predictions


def _output_folder(output_dir: str | Path) -> Path:
    """``output_dir``, created now, so that a bad one fails before the work, not after."""
    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(
            f"output {folder} is a file; give a folder for predictions.csv and .json"
        )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_predictions(predictions: Sequence[Prediction], directory: Path) -> None:
    """Write ``predictions.json`` and ``predictions.csv`` all or nothing
    (:func:`~litemeta.checkpoint.write_files_atomically`). File names that are not valid
    UTF-8 keep their bytes in the CSV (``surrogateescape``) and are escaped in the JSON."""
    rows = [vars(p) for p in predictions]

    def write_json(path: Path) -> None:
        path.write_text(json.dumps(rows, indent=2))

    def write_csv(path: Path) -> None:
        with path.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
            writer = csv.DictWriter(handle, fieldnames=["path", "label", "probability", "error"])
            writer.writeheader()
            writer.writerows(rows)

    write_files_atomically(
        {directory / "predictions.json": write_json, directory / "predictions.csv": write_csv}
    )
