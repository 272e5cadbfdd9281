"""The train, evaluate and personalise commands on a trained run (the ``trained_run``
fixture of ``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from litemeta.cli import main
from litemeta.experiment import load_experiment, task_dataset
from litemeta.experiment.jobs import personalise
from tests.cli_helpers import STYLED_OVERRIDES as TINY
from tests.cli_helpers import accuracies_by_hand
from tests.cli_helpers import write_emoji as _write_emoji


def test_evaluate_command_prints_the_table(trained_run: Path, tmp_path: Path, capsys) -> None:
    overrides = [*TINY, f"training.output_dir={trained_run}"]
    code = main(["evaluate", "--checkpoint", str(trained_run), "--tasks", "2", *overrides])
    assert code == 0
    out = capsys.readouterr().out
    # By hand: the best checkpoint's learner on the first 2 test tasks of the same settings.
    config = load_experiment("default", overrides)
    tasks = task_dataset(
        config.data, config.data.test_split, 2, config.model.image_size, config.evaluation.seed
    )
    accuracies = accuracies_by_hand(trained_run / "best.pt", tasks)
    mean = sum(accuracies) / 2
    ci95 = 1.96 * (sum((a - mean) ** 2 for a in accuracies) / 2) ** 0.5 / 2**0.5
    row = f"| meta-trained with LITE (best.pt) | 2 | {100 * mean:.2f} ± {100 * ci95:.2f} |"
    assert row in out.splitlines()


def test_evaluate_takes_the_runs_settings_without_repeating_them(trained_run, tmp_path, capsys):
    """The run was trained with overrides; its experiment.yaml holds them."""
    argv = ["evaluate", "--tasks", "2", "--output", str(tmp_path / "a")]
    assert main([*argv, "--checkpoint", str(trained_run), *TINY]) == 0
    with_overrides = capsys.readouterr().out
    argv[-1] = str(tmp_path / "b")
    assert main([*argv, "--checkpoint", str(trained_run / "best.pt")]) == 0
    captured = capsys.readouterr()
    assert captured.out == with_overrides
    assert f"settings of the run: {trained_run / 'experiment.yaml'}" in captured.err


def test_evaluating_random_weights_is_seeded_like_training() -> None:
    """resnet18 without pretraining: the random initialisation follows ``training.seed``,
    not whatever drew random numbers before."""
    from litemeta.experiment.jobs import evaluate_experiment
    from tests.cli_helpers import TINY_OVERRIDES

    def accuracies(before: int, training_seed: int) -> list[float]:
        torch.manual_seed(before)
        overrides = ["data.sampler.way=5", "data.sampler.query=4", f"training.seed={training_seed}"]
        config = load_experiment("default", [*TINY_OVERRIDES, *overrides])
        (result,) = evaluate_experiment(config, checkpoint=None).values()
        return result.task_accuracies

    assert accuracies(1, training_seed=0) == accuracies(2, training_seed=0)
    assert accuracies(1, training_seed=0) != accuracies(1, training_seed=5)  # init matters


def test_a_checkpoint_evaluates_with_another_chunk_size_alike(trained_run, capsys) -> None:
    """The chunk size bounds memory, not what is computed: it is no part of the model."""
    argv = ["evaluate", "--checkpoint", str(trained_run), "--tasks", "2"]
    assert main(argv) == 0
    default = capsys.readouterr().out
    assert main([*argv, "model.chunk_size=1"]) == 0
    assert capsys.readouterr().out == default


def test_evaluate_refuses_a_checkpoint_of_another_model(trained_run: Path, capsys) -> None:
    overrides = [*TINY, "model.image_size=40"]
    assert main(["evaluate", "--checkpoint", str(trained_run), *overrides]) == 1
    assert "image_size" in capsys.readouterr().err


def test_personalise_reports_a_missing_query_folder(trained_run: Path, tmp_path: Path, capsys):
    _write_emoji(tmp_path / "support" / "a", 0, "google")
    _write_emoji(tmp_path / "support" / "b", 40, "google")
    code = main(
        [
            "personalise",
            "--checkpoint",
            str(trained_run),
            "--support",
            str(tmp_path / "support"),
            "--query",
            str(tmp_path / "nowhere"),
        ]
    )
    assert code == 1
    assert "query folder" in capsys.readouterr().err


def test_personalise_prints_the_label_of_each_query_image(
    trained_run: Path, tmp_path: Path, capsys
) -> None:
    support, query = tmp_path / "support", tmp_path / "query"
    colours = {"green": [(30, 200, 40), (50, 220, 60)], "red": [(220, 30, 30), (200, 50, 40)]}
    for label, shades in colours.items():
        for shot, shade in enumerate(shades):
            _solid(support / label / f"{shot}.png", shade)
    _solid(query / "a.png", (210, 40, 35))  # red
    _solid(query / "b.png", (40, 210, 50))  # green
    argv = ["personalise", "--checkpoint", str(trained_run), "--support", str(support)]
    assert main([*argv, "--query", str(query)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[:2] for line in lines] == [
        [str(query / "a.png"), "red"],
        [str(query / "b.png"), "green"],
    ]
    expected = personalise(trained_run, support, query)
    assert lines == [f"{p.path}\t{p.label}\t{p.probability:.3f}" for p in expected]


def _solid(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), colour).save(path)


def test_train_refuses_to_overwrite_a_run(trained_run: Path, capsys) -> None:
    assert main(["train", *TINY, f"training.output_dir={trained_run}"]) == 1
    assert "--resume" in capsys.readouterr().err
