"""Meta-training with LITE: the trainer, the per-task step, the run's checks, its settings,
the task stream, the run log and the processes of a data-parallel run.

Layer: imports the base (``litemeta.lite``, ``tasks``, ``config``, ``precision``,
``checkpoint``, ``device``), ``data``, ``learners`` and ``evaluation``; nothing above.
"""

from litemeta.training.distributed import ProcessGroup, TorchrunEnvironment, torchrun_environment
from litemeta.training.objective import OBJECTIVES, Objective, resolve_objective
from litemeta.training.output_lock import (
    OutputDirectoryInUse,
    check_output_directory_free,
    hold_output_directory,
)
from litemeta.training.preflight import (
    check_training_run,
    earlier_checkpoints,
    read_resumable_checkpoint,
    resume_point,
)
from litemeta.training.random_state import restore_rng_state, rng_state, seed_everything
from litemeta.training.run_log import CsvLog, RunLog
from litemeta.training.settings import OptimConfig, TrainingConfig
from litemeta.training.step import (
    PendingOutcome,
    TaskOutcome,
    TaskStep,
    TrainingDiverged,
    backward_task,
    queue_backward_task,
)
from litemeta.training.task_stream import TaskSource, seeded_generator, stream_index
from litemeta.training.trainer import (
    StepMetrics,
    Trainer,
    TrainingResult,
    build_optimizer,
    train,
)

__all__ = [
    "OBJECTIVES",
    "CsvLog",
    "Objective",
    "OptimConfig",
    "OutputDirectoryInUse",
    "PendingOutcome",
    "ProcessGroup",
    "RunLog",
    "StepMetrics",
    "TaskOutcome",
    "TaskSource",
    "TaskStep",
    "TorchrunEnvironment",
    "Trainer",
    "TrainingConfig",
    "TrainingDiverged",
    "TrainingResult",
    "backward_task",
    "build_optimizer",
    "check_output_directory_free",
    "check_training_run",
    "earlier_checkpoints",
    "hold_output_directory",
    "queue_backward_task",
    "read_resumable_checkpoint",
    "resolve_objective",
    "restore_rng_state",
    "resume_point",
    "rng_state",
    "seed_everything",
    "seeded_generator",
    "stream_index",
    "torchrun_environment",
    "train",
]
