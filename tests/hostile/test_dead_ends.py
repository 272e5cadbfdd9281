"""A run folder with only best.pt, a checkpoint link that loops, and a Meta-Dataset class
whose records cannot be read while skipping: each says what is wrong and what to do."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from PIL import Image

from litemeta.checkpoint import load_checkpoint
from litemeta.cli import main
from litemeta.data.images import NoReplacementError
from litemeta.data.metadataset import MetaDatasetRecords
from litemeta.data.tfrecord import write_records
from tests.cli_helpers import TINY_OVERRIDES
from tests.data.tf_example import make_example
from tests.hostile.conftest import one_line_error


def test_a_run_folder_with_only_best_pt_resumes_from_it(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "last.pt").unlink()
    argv = ["train", "--no-baseline", *TINY_OVERRIDES, f"training.output_dir={run}"]
    assert main(argv) == 1  # a fresh start would take best.pt for its own
    assert "continue it with --resume" in one_line_error(capsys)
    with pytest.warns(UserWarning, match=r"no last\.pt in .*: resuming from best\.pt"):
        assert main([*argv, "training.steps=2", "evaluation.tasks=0", "--resume"]) == 0
    assert load_checkpoint(run / "last.pt")["step"] == 2


def test_a_looping_best_pt_link_is_named_as_a_link(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "best.pt").unlink()
    (run / "best.pt").symlink_to(run / "other.pt")
    (run / "other.pt").symlink_to(run / "best.pt")
    for target in (run, run / "best.pt"):
        assert main(["evaluate", "--checkpoint", str(target), "--tasks", "1"]) == 1
        line = one_line_error(capsys)
        assert f"{run / 'best.pt'} is a symbolic link that leads to no file (a loop" in line


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 12), colour).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("damage", ["count", "truncated"])
def test_skipping_in_meta_dataset_names_why_a_class_is_unreadable(damage, tmp_path):
    root = tmp_path / "source"
    root.mkdir()
    for class_id in range(2):
        examples = [
            make_example(image=_jpeg((90 * class_id, 20 * i, 9)), label=class_id) for i in range(4)
        ]
        write_records(root / f"{class_id}.tfrecords", examples)
    spec = {
        "name": "source",
        "classes_per_split": {"TRAIN": 2, "VALID": 0, "TEST": 0},
        "images_per_class": {"0": 4, "1": 5 if damage == "count" else 4},
        "class_names": {"0": "n000", "1": "n001"},
        "path": str(root),
        "file_pattern": "{}.tfrecords",
        "__class__": "DatasetSpecification",
    }
    (root / "dataset_spec.json").write_text(json.dumps(spec))
    if damage == "truncated":
        data = (root / "1.tfrecords").read_bytes()
        (root / "1.tfrecords").write_bytes(data[: len(data) // 2])
    records = MetaDatasetRecords(root, "train", on_error="skip")
    with pytest.warns(UserWarning), pytest.raises(NoReplacementError) as refused:
        records.load_image(1, 3)
    cause = "has 4 records" if damage == "count" else "1.tfrecords"
    message = str(refused.value)
    assert "why it was unreadable" in message and cause in message.split("why it was")[1]
