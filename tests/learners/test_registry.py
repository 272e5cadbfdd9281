"""Learners register themselves by name: a new learner is one new module in the package,
seen by the factory, training, saving and loading, the benchmarks, personalisation and export."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import litemeta.learners
from litemeta.bench.personalise import personalise_learners
from litemeta.bench.step import StepConfig, measure_step
from litemeta.config import ConfigError
from litemeta.experiment.jobs import personalise
from litemeta.learners import (
    LEARNERS,
    BackboneLearner,
    ProtoNets,
    build_learner,
    discover_learners,
    load_learner,
    save_learner,
)
from litemeta.learners.backbone_learner import option_names
from litemeta.lite import LiteSettings
from litemeta.tasks import Task
from litemeta.training import backward_task
from tests.cli_helpers import train_tiny_run

from .helpers import colour_task

TINY = {"backbone": "resnet18", "image_size": 32, "pretrained": False}

NEW_LEARNER = '''
"""ProtoNets under a new name with new options and a classifier of its own (scaled cosine
similarity to the class means): a learner added as one file."""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from litemeta.backbones import Backbone
from litemeta.learners.classifiers import BackboneTaskClassifier
from litemeta.learners.protonets import ProtoNets
from litemeta.learners.statistics import class_means


def cosine_logits(features: Tensor, prototypes: Tensor, scale: float) -> Tensor:
    return scale * F.normalize(features, dim=-1) @ F.normalize(prototypes, dim=-1).T


class CosineHead(nn.Module):
    def __init__(self, prototypes: Tensor, scale: float) -> None:
        super().__init__()
        self.register_buffer("prototypes", prototypes.detach().float())
        self.scale = scale

    def forward(self, features: Tensor) -> Tensor:
        return cosine_logits(features, self.prototypes, self.scale)


class CosineClassifier(BackboneTaskClassifier):
    def __init__(self, backbone, support_shape, prototypes, film, scale: float) -> None:
        super().__init__(backbone, support_shape, film)
        self.prototypes, self.scale = prototypes, scale

    def logits(self, features: Tensor) -> Tensor:
        return cosine_logits(features, self.prototypes, self.scale)

    def export_head(self) -> nn.Module:
        return CosineHead(self.prototypes, self.scale)

    def logits_without(self, features, labels, way, row):
        keep = torch.arange(labels.shape[0], device=labels.device) != row
        prototypes = class_means(features[keep], labels[keep], way)
        return cosine_logits(features[row : row + 1], prototypes, self.scale)


class SlowProtoNets(ProtoNets):
    name = "slow_protonets"

    def __init__(
        self, backbone: Backbone, *, delay: float = 0.0, cosine_scale: float = 10.0, **options: Any
    ) -> None:
        super().__init__(backbone, **options)
        self.delay = delay
        self.cosine_scale = cosine_scale

    def adapt(self, images, labels, *, lite=None, support_clips=None):
        means = super().adapt(images, labels, lite=lite, support_clips=support_clips)
        classifier = CosineClassifier(
            self.backbone, images.shape[1:], means.prototypes, means.film, self.cosine_scale
        )
        classifier.support_features = means.support_features
        return classifier
'''


@pytest.fixture
def restore_registry():
    before = dict(LEARNERS)
    yield
    LEARNERS.clear()
    LEARNERS.update(before)


@pytest.fixture
def new_learner_module(tmp_path, monkeypatch, restore_registry):
    """Write a learner module into a folder on the ``litemeta.learners`` package path."""
    folder = tmp_path / "more_learners"
    folder.mkdir()
    (folder / "slow_protonets.py").write_text(textwrap.dedent(NEW_LEARNER))
    monkeypatch.setattr(litemeta.learners, "__path__", [*litemeta.learners.__path__, str(folder)])
    yield discover_learners()
    sys.modules.pop("litemeta.learners.slow_protonets", None)


def test_the_package_registers_every_learner_by_its_name():
    assert {"protonets", "cnaps", "simple_cnaps", "finetuner"} <= set(LEARNERS)
    for name, cls in LEARNERS.items():
        assert issubclass(cls, BackboneLearner) and cls.name == name
    assert LEARNERS["protonets"] is ProtoNets


def test_a_name_taken_by_another_learner_is_refused(restore_registry):
    with pytest.raises(ValueError, match=r"'protonets' .* is taken by .*ProtoNets"):

        class Impostor(ProtoNets):
            name = "protonets"


@pytest.mark.parametrize("name", list(LEARNERS))
def test_saved_options_are_the_constructor_keyword_options(name):
    learner = build_learner(name, **TINY)
    assert list(learner.options) == option_names(type(learner))
    assert json.loads(json.dumps(learner.options)) == learner.options


def test_options_of_a_new_learner_come_from_its_constructor(restore_registry):
    class Tempered(ProtoNets):
        name = "tempered_protonets"

        def __init__(self, backbone, *, temperature: float, **options) -> None:
            super().__init__(backbone, **options)

    learner = build_learner("tempered_protonets", **TINY, temperature=2.0, meta_train="film")
    assert learner.options == {
        "temperature": 2.0,
        "meta_train": "film",
        "distance_scale": None,
        "backbone_lr_scale": 1.0,  # resolved for a randomly initialised backbone
    }
    with pytest.raises(ConfigError, match="needs option 'temperature'"):
        build_learner("tempered_protonets", **TINY)


def test_a_saved_option_no_longer_taken_or_a_missing_required_one_is_refused(
    tmp_path, restore_registry
):
    class Tempered(ProtoNets):
        name = "tempered_protonets"

        def __init__(self, backbone, *, temperature: float = 1.0, **options) -> None:
            super().__init__(backbone, **options)

    learner = build_learner("tempered_protonets", **TINY)
    config = json.loads(json.dumps(learner.config()))
    config["options"]["colour"] = "red"
    torch.save({"config": config, "state_dict": learner.state_dict()}, tmp_path / "extra.pt")
    with pytest.raises(ConfigError, match=r"options\.colour: saved, no longer an option"):
        load_learner(tmp_path / "extra.pt")

    del LEARNERS["tempered_protonets"]  # a later version of the learner, the option required

    class Required(ProtoNets):
        name = "tempered_protonets"

        def __init__(self, backbone, *, temperature: float, **options) -> None:
            super().__init__(backbone, **options)

    config = json.loads(json.dumps(learner.config()))
    del config["options"]["temperature"]
    torch.save({"config": config, "state_dict": learner.state_dict()}, tmp_path / "old.pt")
    with pytest.raises(ConfigError, match=r"options\.temperature: not saved, a required option"):
        load_learner(tmp_path / "old.pt")


def _write_class_folders(root: Path) -> None:
    colours = {"red": (220, 40, 40), "blue": (40, 60, 220)}
    for name, colour in colours.items():
        for shot in range(2):
            folder = root / "support" / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (32, 32), colour).save(folder / f"{shot}.png")
        (root / "query").mkdir(exist_ok=True)
        Image.new("RGB", (32, 32), colour).save(root / "query" / f"{name}.png")


def test_a_new_learner_module_is_built_trained_saved_benchmarked_and_personalised(
    new_learner_module, tmp_path
):
    assert "slow_protonets" in new_learner_module
    # Built by name, its new option saved with the others.
    learner = build_learner("slow_protonets", **TINY, delay=0.5)
    assert type(learner).__name__ == "SlowProtoNets"
    assert learner.options["delay"] == 0.5 and learner.options["meta_train"] == "backbone"

    # One LITE meta-training step.
    support, support_labels, query, query_labels = colour_task(way=2, shots=2, queries=1)
    task = Task(support, support_labels, query, query_labels, ["a", "b"])
    generator = torch.Generator().manual_seed(0)
    backward_task(
        learner.train(), task, lite=LiteSettings(h=2), generator=generator, query_batch_size=2
    )
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.parameters())

    # Saved and loaded.
    save_learner(learner, tmp_path / "learner.pt")
    loaded = load_learner(tmp_path / "learner.pt").eval()
    assert type(loaded) is type(learner) and loaded.options == learner.options
    with torch.no_grad():
        expected = learner.eval().adapt(support, support_labels)(query)
        torch.testing.assert_close(loaded.adapt(support, support_labels)(query), expected)

    # Benchmarked, and among the personalisation benchmark's learners.
    config = StepConfig(
        "slow_protonets", 32, 4, "lite-2", way=2, queries_per_class=1, query_batch_size=1,
        chunk_size=4, backbone="resnet18", pretrained=False, threads=1,
    )  # fmt: skip
    threads = torch.get_num_threads()
    try:
        assert measure_step(vars(config))["saved_bytes"] > 0
    finally:
        torch.set_num_threads(threads)
    assert "slow_protonets" in personalise_learners()

    # Meta-trained by the trainer into a checkpoint that personalises class folders.
    run = train_tiny_run(tmp_path / "run", "model.learner=slow_protonets", "training.lite.h=2")
    _write_class_folders(tmp_path)
    predictions = personalise(run, tmp_path / "support", tmp_path / "query")
    assert sorted(Path(p.path).name for p in predictions) == ["blue.png", "red.png"]
    assert {p.label for p in predictions} <= {"red", "blue"}


def _write_noisy_class_folders(root: Path, shots: int, queries: int) -> list[Path]:
    """``root/support/<colour>/`` photos of three colours with noise; returns the query files."""
    generator = np.random.default_rng(0)
    colours = {"red": (170, 90, 90), "green": (90, 170, 90), "blue": (90, 90, 170)}
    query_files = []
    for name, colour in colours.items():
        (root / "support" / name).mkdir(parents=True)
        (root / "query").mkdir(exist_ok=True)
        for index in range(shots + queries):
            noise = generator.normal(0, 70, (32, 32, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            if index < shots:
                path = root / "support" / name / f"{index}.png"
            else:
                path = root / "query" / f"{name}{index}.png"
                query_files.append(path)
            Image.fromarray(pixels).save(path)
    return query_files


def test_a_new_learner_with_its_own_classifier_exports_to_onnx(new_learner_module, tmp_path):
    """`litemeta export`'s path (a checkpoint and class folders) exports the new learner's
    cosine classifier, and onnxruntime's probabilities are PyTorch's within 1e-4."""
    onnxruntime = pytest.importorskip("onnxruntime", reason="needs the serve extra")
    import onnx

    from litemeta.data.images import read_image_file
    from litemeta.data.support_folder import read_support_folder
    from litemeta.serve.export import export_folders

    torch.manual_seed(0)
    save_learner(build_learner("slow_protonets", **TINY, cosine_scale=8.0), tmp_path / "l.pt")
    query_files = _write_noisy_class_folders(tmp_path, shots=3, queries=2)
    model, labels = export_folders(tmp_path / "l.pt", tmp_path / "support")
    assert labels == ["blue", "green", "red"]
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    queries = torch.stack([read_image_file(str(path), 32) for path in query_files])
    probabilities, rejected, _ = session.run(
        ["probabilities", "none_of_these", "score"], {"image": queries.numpy()}
    )

    learner = load_learner(tmp_path / "l.pt").eval()
    support_set = read_support_folder(tmp_path / "support", 32)
    support, support_labels = support_set.images, support_set.labels
    with torch.no_grad():
        classifier = learner.adapt(support, support_labels)
        logits = classifier(queries).double().numpy()
        features = classifier.embed(queries).double().numpy()
        support_features = classifier.embed(support).double().numpy()
    # By hand: 8 x the cosine similarity to each class's mean support feature.
    means = np.stack([support_features[support_labels.numpy() == k].mean(0) for k in range(3)])
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    cosines = unit @ (means / np.linalg.norm(means, axis=1, keepdims=True)).T
    np.testing.assert_allclose(logits, 8.0 * cosines, rtol=1e-5, atol=1e-5)
    metadata = {p.key: p.value for p in onnx.load_from_string(model).metadata_props}
    temperature = float(metadata["temperature"])
    shifted = np.exp((logits - logits.max(axis=1, keepdims=True)) / temperature)
    expected = shifted / shifted.sum(axis=1, keepdims=True)
    assert probabilities.shape == (6, 3) and rejected.shape == (6,)
    assert np.abs(probabilities - expected).max() < 1e-4
    assert expected.max(axis=1).min() < 0.999, "saturated probabilities would hide errors"
    assert probabilities.argmax(1).tolist() == [2, 2, 1, 1, 0, 0]  # red, green, blue queries
