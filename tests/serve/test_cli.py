"""`litemeta serve` and `litemeta export` refuse what they cannot do, in one line."""

from __future__ import annotations

import importlib.util

import pytest

from litemeta.cli import main


def test_serve_on_another_address_needs_a_token(tmp_path, capsys):
    argv = ["serve", "--checkpoint", str(tmp_path), "--host", "0.0.0.0", "--store", str(tmp_path)]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert error.startswith("litemeta: error: binding to 0.0.0.0") and "--token" in error


def test_a_missing_extra_names_the_install_command(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a)
    )
    argv = ["export", "--checkpoint", str(tmp_path), "--support", str(tmp_path), "--out", "m.onnx"]
    assert main(argv) == 1
    assert "needs fastapi: pip install 'litemeta[serve]'" in capsys.readouterr().err


@pytest.mark.parametrize("megabytes", ["0", "-1", "0.5", "nan", "inf"])
def test_serve_refuses_an_upload_limit_under_one_mb(tmp_path, capsys, megabytes):
    argv = ["serve", "--checkpoint", str(tmp_path), "--max-upload-mb", megabytes]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert f"--max-upload-mb: must be at least 1 (MB), got {megabytes}" in capsys.readouterr().err
