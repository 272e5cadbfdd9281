"""`litemeta serve` and `litemeta export` refuse what they cannot do, in one line."""

from __future__ import annotations

import importlib.util

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
