"""The train and personalise jobs, end to end on the built-in emoji set with a small
backbone (the run is the ``trained_run`` fixture of ``tests/conftest.py``)."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import litemeta.experiment.jobs as jobs
from litemeta.checkpoint import CheckpointError
from litemeta.data.images import read_image_file
from litemeta.evaluation.trained import load_trained_learner
from litemeta.experiment import load_experiment, task_dataset
from litemeta.experiment.jobs import (
    BASELINE,
    META_TRAINED,
    UNTRAINED_BASELINE,
    baseline_name,
    personalise,
)
from litemeta.learners import save_learner
from tests.cli_helpers import TINY_OVERRIDES, accuracies_by_hand
from tests.cli_helpers import write_emoji as _write_emoji


def test_train_writes_checkpoints_logs_and_a_report(trained_run: Path) -> None:
    for name in ("last.pt", "best.pt", "train.csv", "experiment.yaml", "test/results.md"):
        assert (trained_run / name).is_file(), name
    report = json.loads((trained_run / "test" / "results.json").read_text())
    assert set(report) == {UNTRAINED_BASELINE, META_TRAINED}
    with (trained_run / "train.csv").open() as handle:
        assert [row["step"] for row in csv.DictReader(handle)] == ["1", "2"]  # log_every=1
    saved = load_experiment(str(trained_run / "experiment.yaml"))
    assert saved.training.steps == 2 and saved.data.query_styles == ["openmoji"]
    # The report's meta-trained accuracies: the best checkpoint on the test tasks, by hand.
    tasks = task_dataset(
        saved.data, saved.data.test_split, 3, saved.model.image_size, saved.evaluation.seed
    )
    accuracies = accuracies_by_hand(trained_run / "best.pt", tasks)
    assert report[META_TRAINED]["task_accuracies"] == pytest.approx(accuracies)
    assert report[META_TRAINED]["accuracy"]["mean"] == pytest.approx(sum(accuracies) / 3)


def test_the_baseline_is_named_for_how_the_backbone_starts() -> None:
    assert baseline_name(load_experiment("default")) == BASELINE
    random = load_experiment("default", ["model.pretrained=false"])
    assert baseline_name(random) == UNTRAINED_BASELINE
    own = load_experiment("default", ["model.pretrained=false", "model.weights_file=w.pt"])
    assert baseline_name(own) == BASELINE


#: Solid colours per class: two shades for the support set and, for the query, a third
#: shade between them, far from the other class's colours.
SHADES = {
    "red": [(230, 20, 20), (200, 40, 30), (215, 30, 25)],
    "blue": [(20, 30, 230), (40, 50, 200), (30, 40, 215)],
}


def _solid(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), colour).save(path)


def _reference_probabilities(learner, support: Path, queries: list[Path]) -> np.ndarray:
    """ProtoNets by hand in numpy: class means of the support features, then the softmax
    of ``-scale * squared distance`` for each query."""
    size = learner.backbone.image_size

    def features(paths: list[Path]) -> np.ndarray:
        images = torch.stack([read_image_file(str(p), size) for p in paths])
        with torch.no_grad():
            return learner.backbone(images).double().numpy()

    prototypes = np.stack(
        [features(sorted((support / name).iterdir())).mean(axis=0) for name in sorted(SHADES)]
    )
    distances = ((features(queries)[:, None, :] - prototypes[None]) ** 2).sum(axis=-1)
    scale = learner.log_distance_scale  # the meta-learned metric scale, if any
    logits = -(1.0 if scale is None else scale.exp().item()) * distances
    logits -= logits.max(axis=1, keepdims=True)
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_personalise_labels_every_query_image(trained_run: Path, tmp_path: Path) -> None:
    support, query = tmp_path / "support", tmp_path / "query"
    for name, (first, second, held_out) in SHADES.items():
        _solid(support / name / "a.png", first)
        _solid(support / name / "b.png", second)
        for copy in range(2):
            _solid(query / f"{name}{copy}.png", held_out)
    predictions = personalise(trained_run, support, query, output_dir=tmp_path / "out")
    files = sorted(query.iterdir())  # blue0, blue1, red0, red1
    assert [p.path for p in predictions] == [str(f) for f in files]
    assert [p.label for p in predictions] == ["blue", "blue", "red", "red"]
    assert [p.error for p in predictions] == [""] * 4
    expected = _reference_probabilities(load_trained_learner(trained_run), support, files)
    assert expected.argmax(axis=1).tolist() == [0, 0, 1, 1]
    assert [p.probability for p in predictions] == pytest.approx(
        expected.max(axis=1).tolist(), abs=1e-5
    )
    with (tmp_path / "out" / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["path"], r["label"]) for r in rows] == [(p.path, p.label) for p in predictions]
    assert [float(r["probability"]) for r in rows] == pytest.approx(
        [p.probability for p in predictions]
    )
    saved = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert saved == [vars(p) for p in predictions]


def test_a_learner_file_personalises_like_the_run_it_was_saved_from(trained_run, tmp_path):
    save_learner(load_trained_learner(trained_run), tmp_path / "learner.pt")
    support, query = tmp_path / "support", tmp_path / "query"
    for class_id, name in ((0, "seedling"), (40, "other")):
        for style in ("google", "twitter"):
            _write_emoji(support / name, class_id, style)
        _write_emoji(query, class_id, "openmoji")
    from_file = personalise(tmp_path / "learner.pt", support, query)
    assert from_file == personalise(trained_run, support, query)


def test_gradient_checkpointing_with_lite_h_warns_that_it_does_nothing(tmp_path, monkeypatch):
    def stop(*args, **kwargs):
        raise RuntimeError("stopped before building the model")

    monkeypatch.setattr(jobs, "build_model", stop)
    overrides = ["training.lite.gradient_checkpointing=true", f"training.output_dir={tmp_path}"]
    config = load_experiment("default", overrides)
    with (
        pytest.warns(UserWarning, match=r"gradient_checkpointing=true does nothing with lite.h=10"),
        pytest.raises(RuntimeError, match="stopped"),
    ):
        jobs.train_experiment(config)
    config = load_experiment("default", [*overrides, "training.lite.h=null"])
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="stopped"):
        warnings.simplefilter("error")
        jobs.train_experiment(config)


def test_the_runs_checks_run_once_and_before_any_work(tmp_path, monkeypatch):
    """``litemeta train`` checks a run with the trainer's one check, when it builds the
    trainer, before it evaluates or writes anything."""
    import litemeta.training.trainer as trainer_module

    checked: list[bool] = []
    check = trainer_module.check_training_run

    def counted(*args, resume):
        checked.append(resume)
        check(*args, resume=resume)

    def stop(self):
        raise RuntimeError("stopped before training")

    monkeypatch.setattr(trainer_module, "check_training_run", counted)
    monkeypatch.setattr(trainer_module.Trainer, "run", stop)
    output = tmp_path / "run"
    config = load_experiment(
        "default", [*TINY_OVERRIDES, "evaluation.tasks=0", f"training.output_dir={output}"]
    )
    with pytest.raises(RuntimeError, match="stopped before training"):
        jobs.train_experiment(config, compare_baseline=False)
    assert checked == [False]
    (output / "last.pt").write_bytes(b"an earlier run")
    with pytest.raises(FileExistsError, match=r"already holds a training run \(last\.pt\)"):
        jobs.train_experiment(config, compare_baseline=False)
    assert checked == [False, False]
    with pytest.raises(CheckpointError):  # resuming reads the checkpoint first
        jobs.train_experiment(config, resume=True, compare_baseline=False)
    assert checked == [False, False, True]
