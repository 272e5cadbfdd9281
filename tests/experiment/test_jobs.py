"""The train and personalise jobs, end to end on the built-in emoji set with a small
backbone (the run is the ``trained_run`` fixture of ``tests/conftest.py``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from litemeta.experiment.jobs import BASELINE, META_TRAINED, load_trained_learner, personalise
from litemeta.learners import save_learner
from tests.cli_helpers import write_emoji as _write_emoji


def test_train_writes_checkpoints_logs_and_a_report(trained_run: Path) -> None:
    for name in ("last.pt", "best.pt", "train.csv", "experiment.yaml", "test/results.md"):
        assert (trained_run / name).is_file(), name
    report = json.loads((trained_run / "test" / "results.json").read_text())
    assert set(report) == {BASELINE, META_TRAINED}


def test_personalise_labels_every_query_image(trained_run: Path, tmp_path: Path) -> None:
    support, query = tmp_path / "support", tmp_path / "query"
    for class_id, name in ((0, "seedling"), (40, "other")):
        for style in ("google", "twitter"):
            _write_emoji(support / name, class_id, style)
        _write_emoji(query, class_id, "openmoji")
    predictions = personalise(trained_run, support, query, output_dir=tmp_path / "out")
    assert [Path(p.path).parent for p in predictions] == [query, query]
    assert {p.label for p in predictions} <= {"seedling", "other"}
    assert all(0.5 <= p.probability <= 1 for p in predictions)
    with (tmp_path / "out" / "predictions.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 2
    assert len(json.loads((tmp_path / "out" / "predictions.json").read_text())) == 2


def test_a_learner_file_personalises_like_the_run_it_was_saved_from(trained_run, tmp_path):
    save_learner(load_trained_learner(trained_run), tmp_path / "learner.pt")
    support, query = tmp_path / "support", tmp_path / "query"
    for class_id, name in ((0, "seedling"), (40, "other")):
        for style in ("google", "twitter"):
            _write_emoji(support / name, class_id, style)
        _write_emoji(query, class_id, "openmoji")
    from_file = personalise(tmp_path / "learner.pt", support, query)
    assert from_file == personalise(trained_run, support, query)
