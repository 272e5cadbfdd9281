"""Tiny experiment settings and a tiny trained run, for tests of the command line."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from litemeta.data import load_emoji
from litemeta.evaluation.trained import load_trained_learner
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

#: The shared tiny settings, with support and query from different artists and 2 steps.
STYLED_OVERRIDES = [
    *TINY_OVERRIDES,
    "data.support_styles=[google, twitter]",
    "data.query_styles=[openmoji]",
    "training.steps=2",
    "training.log_every=1",
    "evaluation.tasks=3",
]


def train_tiny_run(output: Path, *overrides: str) -> Path:
    """Meta-train the default experiment with tiny settings into ``output``; return it."""
    config = load_experiment(
        "default", [*TINY_OVERRIDES, *overrides, f"training.output_dir={output}"]
    )
    train_experiment(config, compare_baseline=False)
    return output


def write_emoji(folder: Path, class_id: int, style: str) -> Path:
    """Save test-split emoji ``class_id`` in ``style`` as a PNG in ``folder``; return it."""
    collection = load_emoji("test")
    item = collection.item_styles(class_id).index(style)
    image = collection.load_image(class_id, item).permute(1, 2, 0).numpy()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{collection.class_names[class_id]}-{style}.png"
    Image.fromarray(image).save(path)
    return path


def accuracies_by_hand(checkpoint: Path, tasks) -> list[float]:
    """Each task's query accuracy of the learner in ``checkpoint``, adapting without LITE:
    the reference the evaluation reports are checked against."""
    learner = load_trained_learner(checkpoint)
    accuracies = []
    with torch.no_grad():
        for task in tasks:
            classifier = learner.adapt(task.support_images, task.support_labels)
            predicted = classifier(task.query_images).argmax(dim=1)
            accuracies.append((predicted == task.query_labels).double().mean().item())
    return accuracies
