"""Episodic meta-training with LITE (Bronskill et al., "Memory Efficient Meta-Learning with
Large Images", NeurIPS 2021).

One optimiser step accumulates the gradient of ``tasks_per_step`` tasks per process, each
back-propagated by :class:`~litemeta.training.step.TaskStep` with LITE's draws from a
generator seeded by the task's position in the stream. With several processes
(``torchrun``) each draws its own tasks and the gradients are averaged before the step.
Runs checkpoint atomically and resume exactly where they stopped.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from litemeta.checkpoint import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    TrainingState,
    describe_model,
    first_non_finite,
    remove_stale_temporaries,
    save_model,
)
from litemeta.data.loading import Workers, resolve_workers, task_loader
from litemeta.device import Stopwatch, place_on_device
from litemeta.evaluation import EvaluationResult, evaluate
from litemeta.learners.base import FewShotLearner
from litemeta.precision import grad_scaler
from litemeta.tasks import Task
from litemeta.training.distributed import ProcessGroup
from litemeta.training.memory_plan import MemoryPlan, first_task, plan_run
from litemeta.training.output_lock import hold_output_directory
from litemeta.training.preflight import (
    check_training_run,
    read_resumable_checkpoint,
    resume_point,
)
from litemeta.training.random_state import restore_rng_state, rng_state, seed_everything
from litemeta.training.run_log import RunLog
from litemeta.training.settings import ConfigError, OptimConfig, TrainingConfig
from litemeta.training.step import TaskStep, TrainingDiverged
from litemeta.training.task_stream import TaskSource, seeded_generator, stream_index

__all__ = [
    "StepMetrics",
    "Trainer",
    "TrainingResult",
    "build_optimizer",
    "train",
]


@dataclass(frozen=True)
class StepMetrics:
    """What one optimiser step did, summed or averaged over all processes."""

    step: int
    loss: float
    accuracy: float
    tasks_per_second: float
    images_per_second: float
    validation: EvaluationResult | None = None


@dataclass
class TrainingResult:
    """The steps run by this call and where the checkpoints are."""

    final_step: int
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_validation_accuracy: float | None
    history: list[StepMetrics] = field(default_factory=list)


#: What to do about a diverged run, after what happened.
DIVERGED_ADVICE = (
    "training diverged: lower the learning rate (training.optim.lr, or a group's in "
    "training.optim.group_lr) or clip gradients (training.optim.grad_clip), and start again "
    "or resume from a checkpoint written before it diverged"
)


def build_optimizer(learner: FewShotLearner, settings: OptimConfig) -> torch.optim.Adam:
    """Adam over ``learner.parameter_groups(lr)``, with per-group rates from ``group_lr``."""
    groups = learner.parameter_groups(settings.lr)
    names = [group.get("name") for group in groups]
    unknown = sorted(set(settings.group_lr) - set(names))
    if unknown:
        known = ", ".join(str(n) for n in names if n is not None) or "none"
        raise ConfigError(
            f"optim.group_lr names groups {unknown} that {type(learner).__name__} does not "
            f"have (its named parameter groups: {known})"
        )
    for group in groups:
        if group.get("name") in settings.group_lr:
            group["lr"] = settings.group_lr[group["name"]]
    return torch.optim.Adam(groups, lr=settings.lr, weight_decay=settings.weight_decay)


class Trainer:
    """The meta-training loop; ``run()`` trains from scratch or resumes from ``last.pt``.
    The run's checks (:func:`~litemeta.training.preflight.check_training_run`) pass when it
    is built, before any work or any write.

    Args:
        config: the training settings.
        learner: a meta-trainable :class:`FewShotLearner`.
        train_tasks: task ``i`` of a deterministic stream (see
            :mod:`litemeta.training.task_stream`).
        validation_tasks: fixed tasks (a sequence, or a dataset that loads them on demand)
            scored every ``config.validate_every`` steps;
            the best accuracy so far is kept in ``best.pt``.
        resume: continue the run of ``config.output_dir`` from its ``last.pt`` (or
            ``best.pt``); otherwise that directory must hold no earlier run.
        model_config: how the learner was built (backbone, image size, ...); stored in each
            checkpoint, and a checkpoint from a different configuration is refused.
        on_step_end: called with each step's metrics after its checkpoint is written.
        progress: show a progress bar (on the first process only).
        workers: processes that load the next tasks while the model trains (see
            :func:`litemeta.data.loading.task_loader`); ``"auto"``: none on the CPU,
            several with a GPU. The results do not depend on it.
    """

    def __init__(
        self,
        config: TrainingConfig,
        learner: FewShotLearner,
        train_tasks: TaskSource,
        validation_tasks: Sequence[Task] = (),
        *,
        resume: bool = False,
        model_config: Mapping[str, Any] | None = None,
        on_step_end: Callable[[StepMetrics], None] | None = None,
        progress: bool = True,
        workers: Workers = "auto",
    ) -> None:
        self.model_config = describe_model(learner, model_config or {})
        check_training_run(config, learner, self.model_config, resume=resume)
        self.resume = resume
        self.config = config
        self.learner = learner
        self.train_tasks = train_tasks
        self.validation_tasks = validation_tasks
        self.on_step_end = on_step_end
        self.progress = progress
        self.workers = workers
        self.output_dir = Path(config.output_dir)
        self.best_validation_accuracy: float | None = None
        self.memory_plan: MemoryPlan | None = None

    def run(self) -> TrainingResult:
        """Train up to ``config.steps``; resumed, continue from ``last.pt`` exactly."""
        self.group = ProcessGroup.from_environment()
        # One run per output directory: the first process holds its lock for the run.
        lock = hold_output_directory(self.output_dir) if self.group.is_main else nullcontext()
        log: RunLog | None = None
        try:
            with lock:
                try:
                    self._set_up()
                    if self.group.is_main:
                        log = RunLog(self.output_dir, self.start_step)
                        if self.memory_plan is not None:
                            log.note(self.memory_plan.describe())
                        self.config.to_yaml(self.output_dir / "config.yaml")
                    history = self._loop(log)
                finally:
                    if log is not None:
                        log.close()
        finally:
            self.group.close()
        best = self.output_dir / BEST_CHECKPOINT
        return TrainingResult(
            final_step=self.config.steps,
            last_checkpoint=self.output_dir / LAST_CHECKPOINT,
            best_checkpoint=best if best.exists() else None,
            best_validation_accuracy=self.best_validation_accuracy,
            history=history,
        )

    def _check_stream_length(self) -> None:
        """Refuse a task stream (one with a length) too short for the run, before training."""
        length = len(self.train_tasks) if hasattr(self.train_tasks, "__len__") else None
        config, processes = self.config, self.group.world_size
        needed = config.steps * config.tasks_per_step * processes
        if length is not None and length < needed:
            raise ValueError(
                f"the task stream holds {length} tasks, but {config.steps} steps of "
                f"{config.tasks_per_step} tasks on {processes} process(es) take {needed}: "
                "make it steps * tasks_per_step * processes long"
            )

    def _set_up(self) -> None:
        self._check_stream_length()
        device = self.group.device
        seed_everything(self.config.seed + self.group.rank)
        place_on_device(self.learner, device)
        if self.config.lite.h == "auto":  # before the optimiser: the probe leaves no state
            task = first_task(self.train_tasks).to(device)
            self.config, self.memory_plan = plan_run(self.config, self.learner, task)
            if self.group.is_main:
                print(self.memory_plan.describe())
        self.task_step = TaskStep.of(
            self.config.lite,
            query_batch_size=self.config.query_batch_size,
            tasks_per_step=self.config.tasks_per_step,
            precision=self.config.precision,
            open_set_weight=self.config.open_set.weight,
        )
        self.loader_workers = resolve_workers(self.workers, device)
        self.optimizer = build_optimizer(self.learner, self.config.optim)
        self.scaler = grad_scaler(device, self.config.precision)
        self.start_step = 0
        if self.group.is_main:
            remove_stale_temporaries(self.output_dir)
        if self.resume:
            point = resume_point(self.output_dir)
            if point.name != LAST_CHECKPOINT and self.group.is_main:
                warnings.warn(
                    f"no {LAST_CHECKPOINT} in {self.output_dir}: resuming from {point.name}, "
                    "whose training state is that of the step it was written at; the steps "
                    "after it are trained again",
                    stacklevel=3,
                )
            self._resume_from(point)
        else:
            self.group.broadcast_module(self.learner)

    def _resume_from(self, path: Path) -> None:
        weights, state = read_resumable_checkpoint(
            path,
            self.model_config,
            self.config.steps,
            self.group.device,
            withdrawn=self.learner.withdrawn_settings,
        )
        if state.world_size != self.group.world_size:
            raise RuntimeError(
                f"{path} was written by {state.world_size} processes, but "
                f"{self.group.world_size} run now: resume with the same number of processes"
            )
        changed = sorted(  # a run may move: its output_dir is where it is now
            key
            for key, value in self.config.to_dict().items()
            if state.config.get(key) != value and key != "output_dir"
        )
        if changed:
            warnings.warn(f"resuming with changed training settings: {changed}", stacklevel=3)
        self.learner.load_state_dict(weights)
        self.optimizer.load_state_dict(state.optimizer)
        self.scaler.load_state_dict(state.grad_scaler)
        self.start_step = state.step
        self.best_validation_accuracy = state.best_validation_accuracy
        restore_rng_state(state.rng[self.group.rank], self.group.device)

    def _loop(self, log: RunLog | None) -> list[StepMetrics]:
        config = self.config
        history = []
        bar = tqdm(
            total=config.steps,
            initial=self.start_step,
            desc="meta-training",
            disable=not (self.progress and self.group.is_main),
        )
        steps = range(self.start_step + 1, config.steps + 1)
        tasks = task_loader(
            self.train_tasks,
            [index for step in steps for index in self._stream_positions(step)],
            workers=self.loader_workers,
            pin_memory=self.group.device.type == "cuda",
        )
        with bar, tasks:  # leaving it stops the loader's workers, however it is left
            self.learner.train()
            for step in steps:
                metrics = self._step(step, tasks)
                if config.validate_every and (
                    step % config.validate_every == 0 or step == config.steps
                ):
                    metrics = replace(metrics, validation=self._validate(step))
                if step % config.checkpoint_every == 0 or step == config.steps:
                    self._save(LAST_CHECKPOINT, step)
                if log is not None and (step % config.log_every == 0 or step == config.steps):
                    log.log_train(
                        {
                            "step": step,
                            "loss": metrics.loss,
                            "accuracy": metrics.accuracy,
                            "tasks_per_second": metrics.tasks_per_second,
                            "images_per_second": metrics.images_per_second,
                        }
                    )
                if log is not None and metrics.validation is not None:
                    summary = metrics.validation.accuracy
                    log.log_validation(
                        {"step": step, "accuracy": summary.mean, "ci95": summary.ci95}
                    )
                bar.update()
                bar.set_postfix(
                    loss=f"{metrics.loss:.3f}",
                    acc=f"{metrics.accuracy:.3f}",
                    tasks_s=f"{metrics.tasks_per_second:.2f}",
                    img_s=f"{metrics.images_per_second:.0f}",
                )
                history.append(metrics)
                if self.on_step_end is not None:
                    self.on_step_end(metrics)
        return history

    def _stream_positions(self, step: int) -> list[int]:
        """Positions in the task stream of this process's tasks in ``step`` (from 1)."""
        return [
            stream_index(
                step=step - 1,
                rank=self.group.rank,
                world_size=self.group.world_size,
                tasks_per_step=self.config.tasks_per_step,
                task=task,
            )
            for task in range(self.config.tasks_per_step)
        ]

    def _step(self, step: int, tasks: Iterator[Task]) -> StepMetrics:
        """One optimiser step (``step`` counts from 1) over this process's next tasks from
        ``tasks``, which deliver them in stream order."""
        config, group = self.config, self.group
        clock = Stopwatch(group.device)
        self.optimizer.zero_grad(set_to_none=True)
        totals = torch.zeros(4, dtype=torch.float64)
        try:
            pending = [
                self.task_step.queue(
                    self.learner,
                    next(tasks).to(group.device, non_blocking=True),
                    seeded_generator(config.seed, "lite", index),  # the task's LITE draws
                    self.scaler,
                )
                for index in self._stream_positions(step)
            ]
            outcomes = [queued.read() for queued in pending]
        except (TrainingDiverged, torch.linalg.LinAlgError) as error:
            if isinstance(error, torch.linalg.LinAlgError) and step == self.start_step + 1:
                raise  # nothing has been trained yet: not a divergence
            # A factorisation fails on the features of diverged parameters (Simple CNAPs).
            raise TrainingDiverged(f"step {step}: {error}; {DIVERGED_ADVICE}") from error
        for outcome in outcomes:
            totals += torch.tensor(
                [outcome.loss, outcome.correct, outcome.queries, outcome.images],
                dtype=torch.float64,
            )
        parameters = [p for g in self.optimizer.param_groups for p in g["params"]]
        group.average_gradients(parameters)
        if config.optim.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        loss, correct, queries, images = group.all_sum(totals).tolist()
        elapsed = clock.elapsed()
        tasks = config.tasks_per_step * group.world_size
        return StepMetrics(
            step=step,
            loss=loss / tasks,
            accuracy=correct / queries,
            tasks_per_second=tasks / elapsed,
            images_per_second=images / elapsed,
        )

    def _validate(self, step: int) -> EvaluationResult | None:
        """Score the validation tasks (first process only); keep ``best.pt`` on improvement."""
        if not self.validation_tasks:
            return None
        result = None
        if self.group.is_main:
            result = evaluate(
                self.learner,
                self.validation_tasks,
                query_batch_size=self.config.query_batch_size,
                precision=self.config.precision,
                device=self.group.device,
                description=f"validating at step {step}",
                progress=self.progress,
                workers=self.loader_workers,
            )
        improved = result is not None and (
            self.best_validation_accuracy is None
            or result.accuracy.mean > self.best_validation_accuracy
        )
        if improved:
            self.best_validation_accuracy = result.accuracy.mean
        if self.group.gather(improved)[0]:
            self._save(BEST_CHECKPOINT, step)
        return result

    def _save(self, name: str, step: int) -> None:
        """Write a checkpoint (first process); every process contributes its RNG state.
        Parameters or optimiser state holding NaN or infinity stop the run instead
        (:class:`TrainingDiverged`), so every checkpoint written holds a finite model."""
        self._check_finite(step)
        states = self.group.gather(rng_state(self.group.device))
        if not self.group.is_main:
            return
        training = TrainingState(
            step=step,
            optimizer=self.optimizer.state_dict(),
            grad_scaler=self.scaler.state_dict(),
            rng=states,
            world_size=self.group.world_size,
            config=self.config.to_dict(),
            best_validation_accuracy=self.best_validation_accuracy,
        )
        save_model(self.output_dir / name, self.learner, self.model_config, training)

    def _check_finite(self, step: int) -> None:
        """Raise :class:`TrainingDiverged` if a parameter, buffer or optimiser state of this
        process is not finite; every process holds the same ones, so all stop together."""
        broken = first_non_finite(self.learner.state_dict())
        if broken is None:
            broken = first_non_finite(self.optimizer.state_dict()["state"], "optimiser state ")
        if broken is not None:
            raise TrainingDiverged(f"step {step}: {broken} is not finite; {DIVERGED_ADVICE}")


def train(
    config: TrainingConfig,
    learner: FewShotLearner,
    train_tasks: TaskSource,
    validation_tasks: Sequence[Task] = (),
    *,
    resume: bool = False,
    model_config: Mapping[str, Any] | None = None,
    on_step_end: Callable[[StepMetrics], None] | None = None,
    progress: bool = True,
    workers: Workers = "auto",
) -> TrainingResult:
    """Meta-train ``learner`` on ``train_tasks``; see :class:`Trainer` for the arguments."""
    trainer = Trainer(
        config,
        learner,
        train_tasks,
        validation_tasks,
        resume=resume,
        model_config=model_config,
        on_step_end=on_step_end,
        progress=progress,
        workers=workers,
    )
    return trainer.run()
