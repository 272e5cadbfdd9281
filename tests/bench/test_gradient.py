"""The gradient benchmark: `litemeta bench gradient` writes its CSV, table and plot."""

import pytest
import torch
from train_helpers import SyntheticTasks, TinyProtoNet

import litemeta.bench.real_tasks as real_tasks
from litemeta.bench.gradient import VARIANTS, gradient_fidelity
from litemeta.cli import main

from .helpers import TINY_EMOJI_TASK, TINY_MODEL, written_outputs


def test_bench_gradient_writes_csv_markdown_and_plot(tmp_path):
    argv = ["bench", "gradient", *TINY_MODEL, *TINY_EMOJI_TASK, "--out", str(tmp_path)]
    # Repeated learners and h, and h = N (always added), give one set of rows each.
    argv += ["--learners", "protonets", "protonets", "--h", "4", "1", "1", "--draws", "2"]
    assert main(argv) == 0
    rows, _ = written_outputs(tmp_path, "gradient")
    assert len(rows) == 2 * len(VARIANTS)
    assert [(r["h"], r["variant"]) for r in rows][::3] == [
        ("1", "unbiased (ours)"),
        ("4", "unbiased (ours)"),
    ]
    # h = N is the exact gradient.
    assert float(rows[-1]["mean_cosine"]) == pytest.approx(1.0, abs=1e-4)


@pytest.fixture(scope="module")
def fidelity():
    torch.manual_seed(0)
    task = SyntheticTasks(way=3, shot=4)(0)  # N = 12 support images
    rows = gradient_fidelity(TinyProtoNet(), task, [12, 6, 2, 6], draws=40, seed=1)
    assert [(row["h"], row["variant"]) for row in rows][::3] == [
        (h, VARIANTS[0]) for h in (2, 6, 12)
    ]
    return {(row["h"], row["variant"]): row for row in rows}


def test_h_of_n_is_the_exact_gradient_for_every_variant(fidelity):
    for variant in VARIANTS:
        row = fidelity[12, variant]
        assert row["draws"] == 1
        assert row["mean_cosine"] == pytest.approx(1.0)
        assert row["single_relative_error"] == row["mean_relative_error"] == 0.0


@pytest.mark.parametrize("h", [2, 6])
def test_only_the_unbiased_estimator_averages_to_the_exact_gradient(fidelity, h):
    ours, unscaled, query_scaled = (fidelity[h, variant] for variant in VARIANTS)
    assert ours["draws"] == unscaled["draws"] == 40
    # Scaling the whole query loss by N/h scales each draw: same directions, other lengths.
    for key in ("single_cosine_mean", "mean_cosine"):
        assert query_scaled[key] == pytest.approx(unscaled[key], abs=1e-6)
    assert query_scaled["single_relative_error"] != pytest.approx(unscaled["single_relative_error"])
    # The mean of 40 unbiased draws is close to the exact gradient; the biased ones are not.
    assert ours["mean_relative_error"] < 0.1
    assert min(unscaled["mean_relative_error"], query_scaled["mean_relative_error"]) > 0.2
    assert ours["mean_cosine"] > max(unscaled["mean_cosine"], query_scaled["mean_cosine"])


def test_fewer_back_propagated_images_give_noisier_single_draws(fidelity):
    unbiased = VARIANTS[0]
    assert (
        fidelity[2, unbiased]["single_relative_error"]
        > fidelity[6, unbiased]["single_relative_error"]
    )


@pytest.mark.parametrize(
    ("sizes", "draws", "message"),
    [
        ([2, 13], 1, r"a subset size h must lie in 1\.\.12 \(the set size\), got 13"),
        ([0, 2], 1, r"a subset size h must lie in 1\.\.12 \(the set size\), got 0"),
        ([2], 0, "draws must be at least 1, got 0"),
    ],
)
def test_fidelity_refuses_h_outside_1_to_n_and_no_draws(sizes, draws, message):
    task = SyntheticTasks(way=3, shot=4)(0)  # N = 12
    with pytest.raises(ValueError, match=message):
        gradient_fidelity(TinyProtoNet(), task, sizes, draws=draws)


def test_bench_gradient_refuses_h_beyond_n_before_loading_tasks(monkeypatch, tmp_path, capsys):
    def no_tasks(*args, **kwargs):
        raise AssertionError("loaded tasks before checking --h")

    monkeypatch.setattr(real_tasks, "emoji_test_tasks", no_tasks)
    argv = ["bench", "gradient", *TINY_MODEL, *TINY_EMOJI_TASK, "--out", str(tmp_path)]
    assert main([*argv, "--h", "2", "5"]) == 1
    assert capsys.readouterr().err.strip() == (
        "litemeta: error: --h must lie in 1..4 (the set size), got 5"
    )
