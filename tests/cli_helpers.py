"""Tiny experiment settings and a tiny trained run, for tests of the command line."""

from __future__ import annotations

from pathlib import Path

from litemeta.experiment import load_experiment
from litemeta.experiment.jobs import train_experiment

TINY_OVERRIDES = [
    "model.backbone=resnet18",
    "model.pretrained=false",
    "model.image_size=32",
    "data.sampler.way=3",
    "data.sampler.shot=2",
    "data.sampler.query=1",
    "data.validation_tasks=2",
    "training.steps=1",
    "training.tasks_per_step=1",
    "training.checkpoint_every=1",
    "training.validate_every=1",
    "evaluation.tasks=2",
]


def train_tiny_run(output: Path, *overrides: str) -> Path:
    """Meta-train the default experiment with tiny settings into ``output``; return it."""
    config = load_experiment(
        "default", [*TINY_OVERRIDES, *overrides, f"training.output_dir={output}"]
    )
    train_experiment(config, compare_baseline=False)
    return output
