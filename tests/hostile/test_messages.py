"""Values and files that used to end in a bare exception (an overflow, an index error, a
YAML parser's trace, an errno): each is now one line naming the setting or the file and
what to do."""

from __future__ import annotations

import resource
import shutil

import pytest

from litemeta.cli import main
from tests.cli_helpers import TINY_OVERRIDES
from tests.hostile.conftest import one_line_error


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "training.steps=1180591620717411303424",
            "training.steps=1180591620717411303424 is too large: at most 9223372036854775807",
        ),
        (
            "training.seed=18446744073709551616",
            "training.seed=18446744073709551616 is too large: at most",
        ),
        ("evaluation.seed=-18446744073709551616", "evaluation.seed=-18446744073709551616 is too"),
        (
            "training.steps=9223372036854775807",
            "training.steps x tasks_per_step = 9223372036854775807 tasks, more than one run",
        ),
        ("training.optim.lr=1e400", "training.optim.lr must be a finite number, got inf"),
        ("training.optim.lr=" + "9" * 400, "training.optim.lr must be a number"),
    ],
)
def test_numbers_too_large_for_any_use_name_the_setting(override, message, tmp_path, capsys):
    argv = ["train", "--no-baseline", *TINY_OVERRIDES, override]
    assert main([*argv, f"training.output_dir={tmp_path / 'run'}"]) == 1
    assert message in one_line_error(capsys)


@pytest.mark.parametrize("content", [b"root:x:0:0:root:/root:/bin/bash\n", b"", b"\x80\x04K."])
def test_a_weights_file_that_is_not_a_state_dict_is_named(content, tmp_path, capsys):
    weights = tmp_path / "passwd"
    weights.write_bytes(content)
    argv = ["evaluate", "--tasks", "1", *TINY_OVERRIDES, f"model.weights_file={weights}"]
    assert main(argv) == 1
    line = one_line_error(capsys)
    assert f"model.weights_file {weights}" in line and "state dict" in line


def test_a_missing_weights_file_is_named(tmp_path, capsys):
    missing = tmp_path / "nowhere.pth"
    assert main(["evaluate", "--tasks", "1", *TINY_OVERRIDES, f"model.weights_file={missing}"]) == 1
    assert f"model.weights_file {missing} does not exist" in one_line_error(capsys)


@pytest.mark.parametrize(
    ("content", "where"), [("data: [\n  a: b\n", "line 3, column 1: invalid YAML"), ("- 1\n", "")]
)
def test_a_garbage_experiment_file_on_resume_is_named_with_its_line(
    content, where, tiny_run, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "experiment.yaml").write_text(content)
    argv = ["train", "--resume", "--no-baseline", *TINY_OVERRIDES, "training.steps=2"]
    assert main([*argv, f"training.output_dir={run}"]) == 1
    line = one_line_error(capsys)
    assert f"{run / 'experiment.yaml'}" in line and where in line and "delete it" in line


class _FileSizeLimit:
    """``ulimit -f`` for this process: writes past ``size`` bytes fail with EFBIG (Python
    ignores the SIGXFSZ that would otherwise end the process)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __enter__(self) -> None:
        self.previous = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.size, self.previous[1]))

    def __exit__(self, *_) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, self.previous)


def test_personalise_on_a_full_disk_names_the_file_and_leaves_no_partial(
    tiny_run, folders, tmp_path, capsys
):
    support, query = folders
    output = tmp_path / "out"
    argv = ["personalise", "--checkpoint", str(tiny_run), "--support", str(support)]
    with _FileSizeLimit(40):
        code = main([*argv, "--query", str(query), "--output", str(output)])
    assert code == 1
    line = one_line_error(capsys)
    assert f"cannot write {output / 'predictions.json'}: File too large" in line
    assert "ulimit -f" in line
    assert sorted(p.name for p in output.iterdir()) == []


def test_export_on_a_full_disk_names_the_file_and_leaves_no_partial(
    tiny_run, folders, tmp_path, capsys
):
    pytest.importorskip("onnx")
    support, _ = folders
    out = tmp_path / "export" / "model.onnx"
    argv = ["export", "--checkpoint", str(tiny_run), "--support", str(support), "--out", str(out)]
    with _FileSizeLimit(4096):
        code = main(argv)
    assert code == 1
    assert f"cannot write {out}: File too large" in one_line_error(capsys)
    assert sorted(p.name for p in out.parent.iterdir()) == []
