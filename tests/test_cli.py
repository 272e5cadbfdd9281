"""The train, evaluate and personalise commands on a trained run (the ``trained_run``
fixture of ``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

from litemeta.cli import main
from tests.cli_helpers import STYLED_OVERRIDES as TINY
from tests.cli_helpers import write_emoji as _write_emoji


def test_evaluate_command_prints_the_table(trained_run: Path, tmp_path: Path, capsys) -> None:
    overrides = [*TINY, f"training.output_dir={trained_run}"]
    code = main(["evaluate", "--checkpoint", str(trained_run), "--tasks", "2", *overrides])
    assert code == 0
    assert "meta-trained with LITE (best.pt) | 2 |" in capsys.readouterr().out


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


def test_train_refuses_to_overwrite_a_run(trained_run: Path, capsys) -> None:
    assert main(["train", *TINY, f"training.output_dir={trained_run}"]) == 1
    assert "--resume" in capsys.readouterr().err
