"""A saved learner rebuilt from its file alone and adapted to class folders: the same
classifier as adapting the learner it was saved from to the same images by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from litemeta.data.images import read_image_file
from litemeta.evaluation.trained import (
    EXPERIMENT_FILE,
    adapt_checkpoint,
    adapt_in_one_pass,
    load_trained_learner,
    trained_on,
)
from litemeta.learners import build_learner, save_learner

COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40)}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, Path]:
    """A random ProtoNets learner saved to a file, and two class folders of 2 images."""
    folder = tmp_path_factory.mktemp("trained")
    torch.manual_seed(0)
    learner = build_learner("protonets", "resnet18", 32, pretrained=False, distance_scale=0.3)
    save_learner(learner, folder / "learner.pt")
    for name, colour in COLOURS.items():
        (folder / "support" / name).mkdir(parents=True)
        for shade in (0, 40):
            pixel = tuple(max(0, c - shade) for c in colour)
            Image.new("RGB", (24, 24), pixel).save(folder / "support" / name / f"{shade}.png")
    return folder / "learner.pt", folder / "support"


def test_a_checkpoint_adapts_to_class_folders_as_by_hand(saved) -> None:
    checkpoint, support = saved
    adapted = adapt_checkpoint(checkpoint, support, adapt_in_one_pass)
    assert not adapted.learner.training
    assert adapted.support.classes == ["green", "red"]
    files = [support / name / f"{shade}.png" for name in ("green", "red") for shade in (0, 40)]
    images = torch.stack([read_image_file(str(path), 32) for path in files])
    reference = load_trained_learner(checkpoint)
    with torch.no_grad():
        expected = reference.adapt(images, torch.tensor([0, 0, 1, 1]))(images)
        got = adapted.adapted(images)
    torch.testing.assert_close(got, expected)
    assert got.argmax(-1).tolist() == [0, 0, 1, 1]


def test_the_adapter_gets_the_support_set_on_the_learners_device(saved) -> None:
    checkpoint, support = saved
    seen = {}

    def record(learner, images, labels):
        seen.update(device=images.device, labels=labels.tolist(), shape=tuple(images.shape))
        return "adapted"

    adapted = adapt_checkpoint(checkpoint, support, record)
    assert adapted.adapted == "adapted"
    assert seen == {
        "device": next(adapted.learner.parameters()).device,
        "labels": [0, 0, 1, 1],
        "shape": (4, 3, 32, 32),
    }


def test_the_data_set_a_run_was_trained_on_comes_from_its_settings(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    assert trained_on(run) is None  # no settings file
    (run / EXPERIMENT_FILE).write_text("data:\n  dataset: orbit\n")
    assert trained_on(run) == trained_on(run / "best.pt") == "orbit"
    (run / EXPERIMENT_FILE).write_text("data: [unclosed\n")
    assert trained_on(run) is None
