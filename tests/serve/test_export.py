"""The exported ONNX model gives PyTorch's probabilities, and `litemeta export` writes it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from litemeta.cli import main
from litemeta.experiment.jobs import personalise
from litemeta.learners import build_learner
from litemeta.serve.calibration import Background, OpenSet
from litemeta.serve.export import export_onnx
from tests.learners.helpers import colour_task
from tests.serve.conftest import COLOURS, photo

SIZE = 32


def _run(model: bytes, images: torch.Tensor) -> list[np.ndarray]:
    """The model's probabilities, "none of these" and score."""
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(["probabilities", "none_of_these", "score"], {"image": images.numpy()})


@pytest.mark.parametrize(
    ("learner", "options"),
    [
        ("protonets", {"distance_scale": 0.05}),
        ("simple_cnaps", {}),
        ("cnaps", {}),
        ("finetuner", {"learn_film": True, "steps": 5}),
    ],
)
def test_onnx_probabilities_match_pytorch(learner, options):
    torch.manual_seed(0)
    model = build_learner(learner, "resnet18", image_size=SIZE, pretrained=False, **options).eval()
    support, labels, queries, _ = colour_task(way=4, shots=3, queries=5, seed=1)
    with torch.no_grad():
        classifier = model.adapt(support, labels)
        features = classifier.embed(queries).double().numpy()
        logits = classifier(queries).double().numpy()
    generator = torch.Generator().manual_seed(2)
    centres = torch.randn(4, features.shape[1], generator=generator)
    # A background mean of the features' own scale, as a real one is: a far larger one would
    # leave every residual nearly the mean itself, with cosines too close to tell apart.
    scale = float(np.linalg.norm(features, axis=1).mean()) / features.shape[1] ** 0.5
    mean = torch.randn(features.shape[1], generator=generator) * scale
    spanning = torch.randn(features.shape[1], 3, generator=generator).double().numpy()
    basis = np.linalg.qr(spanning)[0]
    directions = torch.from_numpy(basis.T).float()
    kept = np.array([0.0, 0.25, 0.6])

    # By hand: the largest cosine to the class means, both less the mean and mapped by the
    # matrix that keeps the given shares of the parts along the background's directions
    # (the first removed), placed among held-out scores set between the queries' so that
    # some fall below, between and above them.
    shrink = np.eye(features.shape[1]) - basis @ np.diag(1 - kept) @ basis.T

    def residual(x):
        return (x - mean.double().numpy()) @ shrink

    unit, means = residual(features), residual(centres.double().numpy())
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    cosines = (unit @ (means / np.linalg.norm(means, axis=1, keepdims=True)).T).max(1)
    ordered = np.sort(cosines)
    knots = [float(ordered[i : i + 2].mean()) for i in (3, 8, 9, 14)]
    background = Background(mean, directions, torch.from_numpy(kept).float())
    open_set = OpenSet(1.7, centres, background, knots, threshold=0.3)
    exported = export_onnx(model.backbone, classifier, ["a", "b", "c", "d"], open_set)
    probabilities, rejected, score = _run(exported, queries)
    gap = (knots[-1] - knots[0]) / 3
    familiar = np.interp(
        cosines, [knots[0] - gap, *knots, knots[-1] + gap], [0, 0.2, 0.4, 0.6, 0.8, 1]
    )
    shifted = np.exp((logits - logits.max(axis=1, keepdims=True)) / 1.7)
    expected = shifted / shifted.sum(axis=1, keepdims=True)
    assert queries.shape[0] == 20 and probabilities.shape == (20, 4)
    assert np.abs(probabilities - expected).max() < 1e-4
    assert expected.max(axis=1).min() < 0.999, "saturated probabilities would hide errors"
    assert np.abs(score - familiar).max() < 1e-4
    assert rejected.tolist() == (familiar < 0.3).tolist() and 0 < rejected.sum() < 20
    metadata = {p.key: p.value for p in onnx.load_from_string(exported).metadata_props}
    assert json.loads(metadata["labels"]) == ["a", "b", "c", "d"]
    assert metadata["image_size"] == str(SIZE)
    assert float(metadata["temperature"]) == 1.7 and float(metadata["threshold"]) == 0.3


def test_litemeta_export_agrees_with_personalise(tiny_run, tmp_path, capsys):
    for label, colour in COLOURS.items():
        (tmp_path / "support" / label).mkdir(parents=True)
        for shot in range(3):
            (tmp_path / "support" / label / f"{shot}.png").write_bytes(photo(colour, shot))
    (tmp_path / "query").mkdir()
    queries = [photo(colour, 4, kind="JPEG") for colour in COLOURS.values()]
    for index, data in enumerate(queries):
        (tmp_path / "query" / f"q{index}.jpg").write_bytes(data)
    out = tmp_path / "model.onnx"
    argv = ["export", "--checkpoint", str(tiny_run), "--support", str(tmp_path / "support")]
    assert main([*argv, "--out", str(out)]) == 0
    assert "probabilities of ['blue', 'green', 'red']" in capsys.readouterr().out
    from litemeta.data.images import read_image_file

    images = torch.stack(
        [read_image_file(str(tmp_path / "query" / f"q{i}.jpg"), SIZE) for i in range(3)]
    )
    probabilities, _, _ = _run(out.read_bytes(), images)
    expected = personalise(tiny_run, tmp_path / "support", tmp_path / "query")
    assert [p.label for p in expected] == list(COLOURS)  # q0 red, q1 green, q2 blue
    labels = ["blue", "green", "red"]
    metadata = {p.key: p.value for p in onnx.load_from_string(out.read_bytes()).metadata_props}
    temperature = float(metadata["temperature"])
    for row, prediction in zip(probabilities, expected, strict=True):
        assert labels[int(row.argmax())] == prediction.label
        # personalise's softmax at temperature 1 is the exported one at T, sharpened
        assert prediction.probability == pytest.approx(
            float((row**temperature).max() / (row**temperature).sum()), abs=1e-4
        )


def test_export_to_a_folder_fails_before_the_work(tmp_path, capsys, monkeypatch):
    import litemeta.serve.export as export

    monkeypatch.setattr(export, "export_folders", lambda *_: pytest.fail("work started"))
    argv = ["export", "--checkpoint", "any", "--support", "any", "--out", str(tmp_path)]
    assert main(argv) == 1
    assert "is a folder; give a file, e.g." in capsys.readouterr().err
