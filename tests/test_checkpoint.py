"""Checkpoints are checksummed and loaded safely: a damaged or foreign file is one clear error
naming it, through the library and through `litemeta evaluate` / `personalise`."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest
import torch

from litemeta.checkpoint import (
    CheckpointError,
    describe_model,
    load_checkpoint,
    load_model_weights,
    read_model,
    read_training_checkpoint,
    remove_stale_temporaries,
    save_atomically,
    save_model,
)
from litemeta.cli import main
from tests.cli_helpers import TINY_OVERRIDES, train_tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("run") / "run")


def _payloads_equal(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        other = b[key]
        if isinstance(value, torch.Tensor):
            if not (isinstance(other, torch.Tensor) and torch.equal(value, other)):
                return False
        elif isinstance(value, dict):
            if not (isinstance(other, dict) and _payloads_equal(value, other)):
                return False
        elif value != other:
            return False
    return True


def test_every_bit_flip_is_detected_or_harmless(tmp_path):
    generator = torch.Generator().manual_seed(0)
    model = {f"layer{i}.weight": torch.randn(32, 32, generator=generator) for i in range(8)}
    save_atomically({"step": 7, "model": model, "best_validation_accuracy": 0.5}, tmp_path / "b.pt")
    original = (tmp_path / "b.pt").read_bytes()
    reference = load_checkpoint(tmp_path / "b.pt")
    rng = random.Random(0)
    detected = 0
    for case in range(200):
        damaged = bytearray(original)
        bit = rng.randrange(len(damaged) * 8)
        damaged[bit // 8] ^= 1 << (bit % 8)
        path = tmp_path / f"flip{case}.pt"
        path.write_bytes(bytes(damaged))
        try:
            loaded = load_checkpoint(path)
        except CheckpointError as error:
            assert str(path) in str(error)
            detected += 1
        else:  # a flip outside the payload (e.g. a zip timestamp) must change nothing
            assert _payloads_equal(loaded, reference), f"bit {bit} changed the checkpoint"
    assert detected >= 150  # nearly all of the file is the payload


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {name: tmp_path / f"{name}.pt" for name in ("empty", "random", "code", "tensor")}
    files["empty"].write_bytes(b"")
    files["random"].write_bytes(random.Random(1).randbytes(4096))
    torch.save({"model": _RunsCode()}, files["code"])
    torch.save(torch.ones(3), files["tensor"])
    return files


@pytest.mark.parametrize("kind", ["empty", "random", "code", "tensor"])
def test_files_that_are_not_checkpoints_are_refused(kind, tmp_path):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(CheckpointError, match="checkpoint") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)
    assert "weights_only" not in str(error.value)


@pytest.mark.parametrize("kind", ["empty", "random", "code", "tensor", "flipped"])
@pytest.mark.parametrize("command", ["evaluate", "personalise"])
def test_commands_print_one_line_for_a_bad_checkpoint(command, kind, run, tmp_path, capsys):
    if kind == "flipped":
        path = tmp_path / "flipped.pt"
        data = bytearray((run / "best.pt").read_bytes())
        data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))
    else:
        path = _bad_files(tmp_path)[kind]
    if command == "evaluate":
        argv = ["evaluate", "--checkpoint", str(path), *TINY_OVERRIDES]
    else:
        argv = ["personalise", "--checkpoint", str(path), "--support", ".", "--query", "."]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("litemeta: error: ") and err.count("\n") == 1, err
    assert str(path) in err and "weights_only" not in err and "Traceback" not in err


def test_a_good_checkpoint_round_trips(tmp_path):
    payload = {"step": 3, "weights": torch.arange(5.0), "nested": {"x": [1, 2]}}
    save_atomically(payload, tmp_path / "a.pt")
    assert _payloads_equal(load_checkpoint(tmp_path / "a.pt"), payload)


def test_a_checkpoint_is_readable_as_the_other_outputs_are(tmp_path):
    """Created with the process's usual permissions (a temporary file's 0600 is not)."""
    mask = os.umask(0o022)
    try:
        save_atomically({"step": 1}, tmp_path / "a.pt")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.pt").stat().st_mode & 0o777 == 0o644


def test_a_failed_write_says_how_much_room_is_left_and_keeps_the_old_checkpoint(
    tmp_path, monkeypatch
):
    save_atomically({"step": 1}, tmp_path / "last.pt")

    save = torch.save

    def full_disk(payload, target):  # what torch raises when the disk fills up
        if isinstance(target, io.BytesIO):  # serialising in memory works
            return save(payload, target)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 832 vs 726")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*last\.pt .*MB free"):
        save_atomically({"step": 2}, tmp_path / "last.pt")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt") == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_temporaries_of_a_killed_write_are_removed_on_the_next_start(run, tmp_path):
    stale = run / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    unrelated = run / "notes.tmp"
    unrelated.write_text("mine")
    assert main(["train", "--resume", *TINY_OVERRIDES, f"training.output_dir={run}"]) == 0
    assert not stale.exists() and unrelated.exists()
    assert remove_stale_temporaries(tmp_path) == []


def test_a_model_file_is_a_training_checkpoint_without_the_training_state(tmp_path):
    model, path = torch.nn.Linear(2, 3), tmp_path / "model.pt"
    save_model(path, model, {"width": 3})
    saved = read_model(path)
    assert saved.config == describe_model(model, {"width": 3})
    assert all(torch.equal(saved.weights[k], v) for k, v in model.state_dict().items())
    other = torch.nn.Linear(2, 3)
    assert set(load_model_weights(other, path, {"width": 3})) == {
        "model",
        "model_config",
        "model_fingerprint",
    }
    assert torch.equal(other.weight, model.weight)
    with pytest.raises(CheckpointError, match="no training state") as error:
        read_training_checkpoint(path, saved.config)
    assert str(path) in str(error.value)
