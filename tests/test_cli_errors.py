"""What the command line does with mistakes: one line naming the problem and what to do,
a non-zero exit, and no silently wrong result."""

from __future__ import annotations

import csv
import shlex
import shutil
from pathlib import Path

import pytest
from PIL import Image

import litemeta.data.emoji_build as emoji_build
import litemeta.evaluation.trained as trained
import litemeta.experiment.jobs as jobs
from litemeta.cli import main
from litemeta.config import ConfigError
from litemeta.training import Trainer
from tests.cli_helpers import TINY_OVERRIDES, train_tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("run") / "run")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("litemeta:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _image(path: Path, colour=(200, 30, 30), size=(20, 20)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


# 4. Tracebacks instead of messages


def test_yaml_syntax_error_is_one_line_with_the_line_number(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  learner: [protonets\n")
    assert main(["train", "--config", str(bad)]) == 1
    line = _one_line_error(capsys)
    assert "bad.yaml" in line and "line 3" in line and "invalid YAML" in line


def test_yaml_object_tags_are_refused_and_never_run(tmp_path, capsys):
    target = tmp_path / "made-by-yaml"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"model: !!python/object/apply:os.mkdir ['{target}']\n")
    assert main(["train", "--config", str(evil)]) == 1
    assert "plain values only" in _one_line_error(capsys)
    assert not target.exists()


def test_unknown_learner_option_names_the_known_ones(tmp_path, capsys):
    argv = ["train", *TINY_OVERRIDES, "model.options.nonsense=3"]
    assert main([*argv, f"training.output_dir={tmp_path}"]) == 1
    line = _one_line_error(capsys)
    assert "no option 'nonsense'" in line and "distance_scale" in line


def test_debug_flag_and_variable_show_the_traceback(tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        main(["train", "--config", str(bad), "--debug"])
    monkeypatch.setenv("LITEMETA_DEBUG", "1")
    with pytest.raises(ConfigError, match="invalid YAML"):
        main(["train", "--config", str(bad)])


def test_ctrl_c_says_where_the_checkpoint_is_and_how_to_resume(run, tmp_path, monkeypatch, capsys):
    output = tmp_path / "run"
    shutil.copytree(run, output)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "run", interrupted)
    argv = ["train", "--no-baseline", *TINY_OVERRIDES, f"training.output_dir={output}"]
    argv.append("training.log_every=1")  # the spaces of the next one need quotes in a shell
    assert main([*argv, "data.support_styles=[google, twitter]", "--resume"]) == 130
    line = _one_line_error(capsys)
    assert f"{output / 'last.pt'}" in line and line.endswith("--resume")
    command = shlex.split(line.split("continue with: ")[1])
    assert command[-3:] == ["data.support_styles=[google, twitter]", "--no-baseline", "--resume"]
    assert "training.steps=1" in command


def _personalise(run: Path, support: Path, query: Path, *extra: str) -> int:
    argv = ["personalise", "--checkpoint", str(run), "--support", str(support)]
    return main([*argv, "--query", str(query), *extra])


def test_a_decompression_bomb_is_an_unreadable_image(run, tmp_path, capsys):
    support, query = tmp_path / "support", tmp_path / "query"
    _image(support / "red" / "a.png")
    _image(support / "blue" / "a.png", (20, 20, 220))
    _image(query / "fine.png")
    Image.new("1", (14_000, 14_000)).save(query / "huge.png")
    assert _personalise(run, support, query) == 1
    line = _one_line_error(capsys)
    assert "huge.png" in line and "too large" in line and "--skip-unreadable" in line


# 5. personalise on bad folders


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    support, query = tmp_path / "support", tmp_path / "query"
    for name, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        _image(support / name / "a.png", colour)
        _image(support / name / "b.png", colour)
    _image(query / "q.png")
    return support, query


def test_personalise_refuses_a_single_class(run, folders, capsys):
    support, query = folders
    shutil.rmtree(support / "blue")
    assert _personalise(run, support, query) == 1
    assert "at least two classes" in _one_line_error(capsys)


def test_personalise_refuses_an_empty_class_folder(run, folders, capsys):
    support, query = folders
    (support / "green").mkdir()
    assert _personalise(run, support, query) == 1
    assert "['green']" in _one_line_error(capsys)


def test_personalise_refuses_images_outside_class_folders(run, folders, capsys):
    support, query = folders
    _image(support / "loose.png")
    assert _personalise(run, support, query) == 1
    assert "loose.png" in _one_line_error(capsys)


def test_personalise_ignores_hidden_files_and_can_skip_unreadable_ones(run, folders, capsys):
    support, query = folders
    (support / "red" / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (query / "._q.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (query / "broken.png").write_bytes(b"not a png")
    assert _personalise(run, support, query) == 1
    line = _one_line_error(capsys)
    assert "broken.png" in line and "--skip-unreadable" in line and "on_error" not in line

    out = query.parent / "out"
    assert _personalise(run, support, query, "--skip-unreadable", "--output", str(out)) == 0
    captured = capsys.readouterr()
    assert "q.png\t" in captured.out and "._q.png" not in captured.out
    assert "broken.png" in captured.err and "skipped 1 unreadable image" in captured.err
    with (out / "predictions.csv").open() as handle:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(handle)}
    assert set(rows) == {"q.png", "broken.png"} and rows["broken.png"]["error"]


def test_personalise_follows_linked_class_folders(run, folders, tmp_path, capsys):
    support, query = folders
    linked = tmp_path / "linked"
    linked.mkdir()
    for name in ("red", "blue"):
        (linked / name).symlink_to(support / name, target_is_directory=True)
    assert _personalise(run, linked, query) == 0
    assert "q.png\t" in capsys.readouterr().out


def test_personalise_names_files_it_cannot_read_as_images(run, folders, capsys):
    support, query = folders
    (query / "IMG_1.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.warns(UserWarning, match=r"left out 1 file.*IMG_1\.HEIC.*convert them"):
        assert _personalise(run, support, query) == 0


def test_personalise_says_a_file_is_not_a_folder(run, folders, capsys):
    support, query = folders
    assert _personalise(run, support, query / "q.png") == 1
    line = _one_line_error(capsys)
    assert "must be a folder of images" in line and "q.png is a file" in line


def test_a_bad_output_folder_fails_before_the_work(run, folders, capsys, monkeypatch):
    support, query = folders
    taken = query.parent / "taken"
    taken.write_text("a file")
    monkeypatch.setattr(trained, "load_trained_learner", lambda *_: pytest.fail("work started"))
    assert _personalise(run, support, query, "--output", str(taken)) == 1
    assert "is a file; give a folder" in _one_line_error(capsys)


def test_unreadable_support_images_are_warned_about_not_listed_as_predictions(run, folders, capsys):
    support, query = folders
    (support / "red" / "c.png").write_bytes(b"not a png")
    out = query.parent / "out"
    with pytest.warns(UserWarning, match=r"left out unreadable support image.*red/c\.png"):
        argv = ("--skip-unreadable", "--output", str(out))
        assert _personalise(run, support, query, *argv) == 0
    with (out / "predictions.csv").open() as handle:
        assert [Path(r["path"]).name for r in csv.DictReader(handle)] == ["q.png"]


def test_file_names_that_are_not_utf8_keep_their_bytes_in_the_csv(run, folders, capsys):
    support, query = folders
    name = b"caf\xe9.png"  # Latin-1, not UTF-8: Python sees a lone surrogate
    shutil.copy(query / "q.png", bytes(query) + b"/" + name)
    out = query.parent / "out"
    assert _personalise(run, support, query, "--output", str(out)) == 0
    rows = (out / "predictions.csv").read_bytes().splitlines()[1:]
    assert sorted(row.split(b",")[0].rsplit(b"/", 1)[1] for row in rows) == [name, b"q.png"]
    assert not list(out.glob("*.partial"))


# 6. Silently accepted nonsense


def test_lite_h_beyond_the_support_set_warns_that_it_is_full_backpropagation(tmp_path):
    argv = ["train", "--no-baseline", *TINY_OVERRIDES, "training.lite.h=1000"]
    with pytest.warns(UserWarning, match=r"lite.h=1000.*\(6 images\).*full back-propagation"):
        assert main([*argv, f"training.output_dir={tmp_path}"]) == 0


def test_duplicate_yaml_keys_are_an_error(tmp_path, capsys):
    config = tmp_path / "dup.yaml"
    config.write_text("training:\n  steps: 5\n  steps: 50\n")
    assert main(["train", "--config", str(config)]) == 1
    assert "duplicate key 'steps'" in _one_line_error(capsys)


def test_negative_evaluation_tasks_are_refused(capsys):
    assert main(["evaluate", *TINY_OVERRIDES, "evaluation.tasks=-3"]) == 1
    assert "evaluation.tasks must be >= 0" in _one_line_error(capsys)


def test_evaluate_with_zero_tasks_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--tasks", "0"])
    assert exit_.value.code == 2
    assert "--tasks: must be at least 1" in capsys.readouterr().err


def test_overrides_are_accepted_after_flags(capsys):
    # the override after the flag reaches the config (and is checked there)
    assert main(["train", "training.steps=1", "--no-baseline", "x=y"]) == 1
    assert "unknown key 'x'" in _one_line_error(capsys)


# 7. Writes where it should not


def test_bench_writes_to_a_run_folder_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["bench", "personalise", "--backbone", "resnet18", "--no-pretrained"]
    argv += ["--size", "32", "--way", "2", "--shot", "1", "--queries", "1", "--tasks", "1"]
    assert main([*argv, "--learners", "protonets"]) == 0
    assert (tmp_path / "runs" / "bench" / "personalise" / "personalise.csv").is_file()
    assert not (tmp_path / "docs").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "0"], "--size must be a positive"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--out", "FULL"], "not empty"),
    ],
)
def test_build_emoji_checks_its_settings_before_fetching(
    extra, message, tmp_path, monkeypatch, capsys
):
    def no_fetch(*args, **kwargs):
        raise AssertionError("fetched packages before checking the settings")

    monkeypatch.setattr(emoji_build, "fetch_packages", no_fetch)
    full = tmp_path / "full"
    _image(full / "old" / "a.png")
    out = ["--out", str(full)] if extra[:1] == ["--out"] else ["--out", str(tmp_path / "new")]
    argv = ["data", "build-emoji", *out, *(extra if extra[:1] != ["--out"] else [])]
    assert main(argv) == 1
    assert message in _one_line_error(capsys)
    assert sorted(p.name for p in full.iterdir()) == ["old"]


_BENCH_MEMORY = ["bench", "memory", "--learners", "protonets", "--sizes", "32", "--way", "5"]
_BENCH_MEMORY += ["--support", "20", "--modes", "inference", "--backbone", "resnet18"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*_BENCH_MEMORY, "--way", "0"], "--way: must be at least 1, got 0"),
        ([*_BENCH_MEMORY, "--way", "-2"], "--way: must be at least 1, got -2"),
        ([*_BENCH_MEMORY, "--learners", "foo"], "--learners: invalid choice: 'foo'"),
        ([*_BENCH_MEMORY, "--backbone", "foo"], "--backbone: unknown backbone 'foo'"),
        ([*_BENCH_MEMORY, "--device", "tpu"], "--device: expected cpu, cuda or cuda:<index>"),
        ([*_BENCH_MEMORY, "--sizes", "0"], "--sizes: must be at least 1"),
        ([*_BENCH_MEMORY, "--threads", "0"], "--threads: must be at least 1"),
        ([*_BENCH_MEMORY, "--chunk-size", "0"], "--chunk-size: must be at least 1"),
        ([*_BENCH_MEMORY, "--query-batch-size", "0"], "--query-batch-size: must be at least 1"),
        ([*_BENCH_MEMORY, "--queries-per-class", "0"], "--queries-per-class: must be at least"),
        ([*_BENCH_MEMORY, "--modes", "lite-0"], "--modes: unknown mode 'lite-0'"),
        (["bench", "speed", "--repeats", "0"], "--repeats: must be at least 1"),
        (["bench", "speed", "--repeats", "-1"], "--repeats: must be at least 1"),
        (["bench", "gradient", "--draws", "0"], "--draws: must be at least 1"),
        (["bench", "gradient", "--h", "0"], "--h: must be at least 1"),
        (["bench", "personalise", "--tasks", "0"], "--tasks: must be at least 1"),
        (["bench", "pipeline", "--workers", "-1"], "--workers: must be at least 0"),
        (["bench", "pipeline", "--size", "0"], "--size: must be at least 1"),
    ],
)
def test_bench_arguments_are_checked_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert f"error: argument {message}" in capsys.readouterr().err


def test_bench_device_must_be_available(monkeypatch, capsys):
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    with pytest.raises(SystemExit):
        main([*_BENCH_MEMORY, "--device", "cuda"])
    assert "--device: cuda is not available here (0 CUDA devices); use cpu" in (
        capsys.readouterr().err
    )


def test_bench_support_sizes_must_be_multiples_of_way(monkeypatch, capsys):
    import litemeta.bench.memory as memory

    monkeypatch.setattr(memory, "run_grid", lambda *a, **k: pytest.fail("ran the grid"))
    assert main([*_BENCH_MEMORY, "--support", "20", "7"]) == 1
    assert "--support 7 is not a multiple of --way 5" in _one_line_error(capsys)


# 8. Resume details


def test_resumed_run_keeps_the_baseline_and_validates_its_extra_steps(run, tmp_path, capsys):
    output = tmp_path / "run"
    shutil.copytree(run, output)
    argv = ["train", *TINY_OVERRIDES, "training.validate_every=5", f"training.output_dir={output}"]
    assert main([*argv, "training.steps=2", "--resume"]) == 0
    captured = capsys.readouterr()
    assert "random weights, no meta-training" in captured.out
    assert "meta-trained with LITE" in captured.out
    with (output / "validation.csv").open() as handle:
        assert [row["step"] for row in csv.DictReader(handle)] == ["1", "2"]
    assert "validating at step 2" in captured.err  # a progress bar, not silence


def test_a_best_checkpoint_left_by_an_earlier_run_is_not_taken_for_this_ones(run, tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    shutil.copy(run / "best.pt", output / "best.pt")
    argv = ["train", "--no-baseline", *TINY_OVERRIDES, f"training.output_dir={output}"]
    with pytest.raises(FileExistsError, match=r"already holds a training run \(best\.pt\)"):
        main([*argv, "--debug"])
    assert sorted(p.name for p in output.iterdir()) == ["best.pt"]


def test_a_refused_resume_changes_nothing_and_runs_nothing(run, tmp_path, capsys, monkeypatch):
    output = tmp_path / "run"
    shutil.copytree(run, output)
    saved = (output / "experiment.yaml").read_text()
    monkeypatch.setattr(jobs, "_evaluate", lambda *_: pytest.fail("the baseline was evaluated"))
    argv = ["train", *TINY_OVERRIDES, f"training.output_dir={output}", "--resume"]
    assert main([*argv, "model.learner=simple_cnaps"]) == 1
    assert "different model configuration" in _one_line_error(capsys)
    assert main([*argv, "training.steps=0"]) == 1  # refused by the settings
    capsys.readouterr()
    assert (output / "experiment.yaml").read_text() == saved
    empty = tmp_path / "never-trained"
    assert main([*argv[:-2], f"training.output_dir={empty}", "--resume"]) == 1
    assert "no checkpoint at" in _one_line_error(capsys) and not empty.exists()


def test_resuming_past_the_checkpoints_step_is_refused_with_what_to_do(run, tmp_path, capsys):
    output = tmp_path / "run"
    shutil.copytree(run, output)  # at step 1
    argv = ["train", "--no-baseline", *TINY_OVERRIDES, f"training.output_dir={output}"]
    assert main([*argv, "training.steps=2", "evaluation.tasks=0", "--resume"]) == 0
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 1  # training.steps=1 again
    line = _one_line_error(capsys)
    assert "is at step 2, beyond training.steps=1" in line and "litemeta evaluate" in line


def test_resuming_with_other_data_settings_names_them(run, tmp_path):
    output = tmp_path / "run"
    shutil.copytree(run, output)
    argv = ["train", "--no-baseline", *TINY_OVERRIDES, f"training.output_dir={output}"]
    with pytest.warns(UserWarning, match=r"changed data settings \(data\.sampler\.shot: 2 -> 1\)"):
        assert main([*argv, "data.sampler.shot=1", "--resume"]) == 0


# 9. data info --verify


def test_data_info_verify_lists_unreadable_images(tmp_path, capsys):
    for name in ("a", "b"):
        _image(tmp_path / name / "good.png")
    (tmp_path / "b" / "bad.png").write_bytes(b"\x89PNG truncated")
    assert main(["data", "info", str(tmp_path)]) == 0
    assert "bad.png" not in capsys.readouterr().out
    assert main(["data", "info", str(tmp_path), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "unreadable: 1 of 3 images" in out and str(tmp_path / "b" / "bad.png") in out


def test_warnings_are_one_line_like_the_errors(tmp_path):
    import subprocess
    import sys

    for name in ("a", "b"):
        _image(tmp_path / name / "0.png")
    _image(tmp_path / "stray.png")
    completed = subprocess.run(
        [sys.executable, "-m", "litemeta.cli", "data", "info", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stderr.splitlines() == [
        f"litemeta: warning: 1 image(s) lie in {tmp_path} itself, outside any class folder, "
        "and are left out (e.g. stray.png); move them into <class>/ folders"
    ]


def test_the_skip_hint_is_not_offered_when_skipping_already_ran_out():
    import argparse

    from litemeta.cli.entry import _hint
    from litemeta.data.images import ImageLoadError, NoReplacementError

    args = argparse.Namespace(unreadable_hint="to skip unreadable images: data.on_error=skip")
    assert _hint(ImageLoadError("cannot decode image x.png"), args).endswith("on_error=skip)")
    assert _hint(NoReplacementError("no readable image in class 'a'"), args) == ""


def test_the_gpu_config_without_a_gpu_says_so(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(jobs, "train_experiment", lambda *_, **__: {})
    with pytest.warns(UserWarning, match="gpu config is sized for a CUDA GPU and none is found"):
        assert main(["train", "--config", "gpu"]) == 0


def test_training_a_learner_with_nothing_to_meta_train_points_at_evaluate(tmp_path, capsys):
    argv = ["train", *TINY_OVERRIDES, "model.learner=finetuner", f"training.output_dir={tmp_path}"]
    assert main(argv) == 1
    assert "evaluate it with `litemeta evaluate model.learner=finetuner`" in _one_line_error(capsys)
    assert not any(tmp_path.iterdir())  # refused before any work or write


def test_stratified_draws_fewer_than_the_classes_are_refused_up_front(tmp_path, capsys):
    argv = ["train", *TINY_OVERRIDES, "training.lite.stratified=true", "training.lite.h=2"]
    assert main([*argv, f"training.output_dir={tmp_path}"]) == 1  # TINY: 3-way tasks
    assert "training.lite.h=2 must be at least the 3 classes" in _one_line_error(capsys)
    assert not any(tmp_path.iterdir())
