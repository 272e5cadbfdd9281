"""One YAML file -> data + model + training + evaluation, and the jobs behind the command line.

``settings`` holds the experiment's description (dataclasses read from YAML), ``builders``
turns it into a learner and task sources, ``jobs`` runs meta-training, evaluation and
personalisation (import it as :mod:`litemeta.experiment.jobs`).

Layer: imports the base, ``data``, ``backbones``, ``learners``, ``evaluation`` and
``training``; only ``bench``, ``serve`` and ``cli`` import it.
"""

from litemeta.data.settings import DataConfig, SamplerConfig
from litemeta.experiment.builders import build_model, decode_size, max_support_size, task_dataset
from litemeta.experiment.settings import (
    EvaluationConfig,
    ExperimentConfig,
    ModelConfig,
    load_experiment,
    shipped_config,
)

__all__ = [
    "DataConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "ModelConfig",
    "SamplerConfig",
    "build_model",
    "decode_size",
    "load_experiment",
    "max_support_size",
    "shipped_config",
    "task_dataset",
]
