"""The open-set benchmark: its AUROC by hand, its tasks, and the figures it writes."""

import csv

import numpy as np
import pytest
import torch

from litemeta.bench.openset import (
    MEASURES,
    QUERY_STYLES,
    SUPPORT_STYLES,
    auroc,
    openset_tasks,
    principal_background,
    run_openset_benchmark,
)
from litemeta.learners import build_learner
from litemeta.serve.calibration import DEFAULT_THRESHOLD


def test_the_principal_background_is_the_mean_and_top_right_singular_vectors():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(30, 6)) * np.array([5, 4, 3, 0.3, 0.2, 0.1]) + 7
    background = principal_background(torch.from_numpy(features), 2)
    # By hand: numpy's SVD of the centred features; projections compared (signs differ).
    top = np.linalg.svd(features - features.mean(0))[2][:2]
    assert background.mean.numpy() == pytest.approx(features.mean(0), rel=1e-6)
    directions = background.directions.double().numpy()
    assert directions.T @ directions == pytest.approx(top.T @ top, abs=1e-5)
    assert background.kept is None  # removed whole


def test_auroc_is_the_share_of_known_untaught_pairs_ranked_right():
    # Pairs (known, untaught): 3 > 1, 3 > 2, 2 > 1, 2 = 2 (half), 0 < 1, 0 < 2: 3.5 of 6.
    assert auroc([3, 2, 0], [1, 2]) == pytest.approx(3.5 / 6)
    assert auroc([5, 6], [1, 2]) == 1.0 and auroc([1], [5]) == 0.0
    with pytest.raises(ValueError, match="at least one known and one untaught"):
        auroc([], [1.0])


def test_tasks_teach_support_styles_and_query_the_others():
    [task] = openset_tasks("validation", 1, way=2, untaught=3, image_size=32, seed=5)
    assert task.support_labels.bincount().tolist() == [len(SUPPORT_STYLES)] * 5
    assert task.query_labels.bincount().tolist() == [len(QUERY_STYLES)] * 5
    assert task.support_images.shape[-1] == 32


def test_the_benchmark_writes_its_figures(tmp_path):
    tasks = openset_tasks("validation", 2, way=2, untaught=2, image_size=32, seed=5)
    torch.manual_seed(0)
    learner = build_learner("protonets", "resnet18", 32, pretrained=False, distance_scale=0.05)
    table = run_openset_benchmark(learner, tasks, 2, tmp_path, model="tiny", progress=False)
    assert "Open set on 2 emoji tasks: 2 classes taught" in table and "tiny" in table
    assert "int8 top-1 agreement with float (32 queries, %)" in table
    assert "| 0.5 |" in table  # the trade-off at other thresholds
    with open(tmp_path / "openset.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for row in rows:
        values = {key: float(value) for key, value in row.items()}
        assert values["accuracy_with_rejection"] <= values["accuracy"]
        # Rates count whole images: 2 classes x 4 query styles on each side.
        images = 2 * len(QUERY_STYLES)
        for rate in ("untaught_rejected", "known_rejected", "accuracy", "accuracy_with_rejection"):
            assert values[rate] * images == pytest.approx(round(values[rate] * images))
        # Each rejected known image costs at most one correct answer.
        assert values["accuracy"] - values["accuracy_with_rejection"] <= (
            values["known_rejected"] + 1e-9
        )
    assert (tmp_path / "openset.md").read_text().startswith("Open set on 2 emoji tasks")
    # The trade-off table's rows are the means of the per-task rates, by hand.
    for level, suffix in ((DEFAULT_THRESHOLD, ""), (0.5, "@0.5")):
        untaught = 100 * sum(float(row[f"untaught_rejected{suffix}"]) for row in rows) / 2
        drop = (
            100
            * sum(
                float(row["accuracy"]) - float(row[f"accuracy_with_rejection{suffix}"])
                for row in rows
            )
            / 2
        )
        assert f"| {level} | {untaught:.1f} |" in table
        assert f"| {drop:.1f} |" in table.split(f"| {level} |")[1].splitlines()[0]
    for name in MEASURES.values():
        assert name in table
