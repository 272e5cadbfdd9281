"""``litemeta evaluate --config paper-vtab`` on a tiny SUN397-shaped VTAB task: 397 classes,
whose first 1,000 training images miss some, as SUN397's do."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from litemeta.cli import main
from litemeta.experiment import load_experiment, task_dataset

SUN397_CLASSES = 397
TRAIN_PER_CLASS = 3

#: A tiny model and images (the paper's EfficientNet-B0 at 224 px otherwise).
TINY = [
    "model.backbone=resnet18",
    "model.pretrained=false",
    "model.image_size=8",
    "model.options.encoder_image_size=32",
]


@pytest.fixture(scope="module")
def sun397_shaped(tmp_path_factory) -> Path:
    """``train/<class>/<index>.png``, files named by their place in the training split as
    the export names them: class c's images are 3c, 3c+1, 3c+2, so the first 1,000 hold
    classes 0-333 only; ``test/<class>/`` one image each."""
    root = tmp_path_factory.mktemp("sun397")
    rng = np.random.default_rng(0)
    for c in range(SUN397_CLASSES):
        name = f"{c:03d}"
        first = TRAIN_PER_CLASS * c
        for split, indices in (("train", range(first, first + TRAIN_PER_CLASS)), ("test", [c])):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in indices:
                pixels = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index:07d}.png")
    return root


def test_paper_vtab_evaluates_sun397_with_every_class_in_the_support_set(
    sun397_shaped: Path, capsys
) -> None:
    overrides = [*TINY, f"data.root={sun397_shaped}"]
    config = load_experiment("paper-vtab", overrides)
    (task,) = task_dataset(config.data, "test", 1, config.model.image_size, 0)
    # LITE's fill: two images of every class (the third of each is skipped) = 794, then
    # nothing follows the last class's second image but its third (1,000 not reached).
    assert task.way == SUN397_CLASSES and task.query_misses == 0
    counts = np.bincount(task.support_labels.numpy(), minlength=SUN397_CLASSES)
    assert counts.min() >= 1 and len(task.support_labels) == 2 * SUN397_CLASSES + 1
    assert main(["evaluate", "--config", "paper-vtab", *overrides]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"^\| random weights, no meta-training \| 1 \| \d+\.\d\d ± 0\.00 \|$", out, re.M
    )


def test_vtab_evaluates_an_800_200_layout_with_a_missing_class_scored_as_wrong(
    tmp_path: Path, capsys
) -> None:
    """``--config vtab``: support = train800/ + val200/; 'owl' has 3 test images and no
    support image, so they count as wrong: accuracy = correct / (scored + 3)."""
    import torch

    from litemeta.experiment import build_model
    from litemeta.training import seed_everything

    rng = np.random.default_rng(1)
    layout = (
        ("train800", "cat", 4), ("train800", "dog", 3), ("val200", "dog", 2),
        ("test", "cat", 3), ("test", "dog", 4), ("test", "owl", 3),
    )  # fmt: skip
    for split, name, count in layout:
        folder = tmp_path / split / name
        folder.mkdir(parents=True)
        for index in range(count):
            pixels = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{index:07d}.png")
    overrides = [*TINY, f"data.root={tmp_path}"]
    with pytest.warns(UserWarning, match=r"1 of 3 classes .*'owl'.* 3 test image"):
        assert main(["evaluate", "--config", "vtab", *overrides]) == 0
    out = capsys.readouterr().out
    # By hand: the same seeded random model, adapted to the 9 support images.
    config = load_experiment("vtab", overrides)
    with pytest.warns(UserWarning):
        (task,) = task_dataset(config.data, "test", 1, config.model.image_size, 1)
    assert len(task.support_labels) == 9 and task.query_misses == 3
    seed_everything(config.training.seed)
    learner = build_model(config.model).eval()
    with torch.no_grad():
        classifier = learner.adapt(task.support_images, task.support_labels, lite=None)
        correct = int((classifier(task.query_images).argmax(-1) == task.query_labels).sum())
    assert 0 < correct < 7  # so that dividing by the 7 scored images alone would show
    row = f"| random weights, no meta-training | 1 | {100 * correct / 10:.2f} ± 0.00 |"
    assert row in out.splitlines(), out
