"""`litemeta bench pipeline`: rows, counts and output files on tiny emoji tasks.

Only deterministic quantities are checked (counts, ranges, files), never timings.
"""

import json
import os

import pytest
import torch

from litemeta.bench.pipeline import (
    PipelineConfig,
    cache_verdict,
    measure_pipeline,
    pipeline_table,
)
from litemeta.cli import main
from litemeta.experiment import load_experiment

TINY = ["data.sampler.way=2", "data.sampler.shot=1", "data.sampler.query=1"]
TINY_MODEL = ["model.backbone=resnet18", "model.pretrained=false", "training.lite.h=1"]


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _config(**kwargs) -> PipelineConfig:
    experiment = load_experiment("default", [*TINY, *TINY_MODEL, "model.image_size=32"])
    settings = {"workers": (0, 1), "tasks": 2}
    return PipelineConfig(experiment=experiment, **{**settings, **kwargs})


def test_loader_rows_count_the_requested_tasks_and_images():
    rows = measure_pipeline(_config(model=False, cache=False, decode=False), progress=False)
    assert [(r["measurement"], r["workers"]) for r in rows] == [("loader", 0), ("loader", 1)]
    for row in rows:
        # 2-way 1-shot with 1 query per class: 4 images per task.
        assert (row["tasks"], row["images"]) == (2, 8)
        assert row["tasks_per_second"] == pytest.approx(2 / row["seconds"])
        assert row["images_per_second"] == pytest.approx(8 / row["seconds"])
        assert 0 < row["wait_seconds"] <= row["seconds"]
        assert row["wait_fraction"] == pytest.approx(row["wait_seconds"] / row["seconds"])


def test_model_rows_report_a_wait_fraction_per_worker_count():
    rows = measure_pipeline(_config(cache=False, decode=False), progress=False)
    stepped = [r for r in rows if r["measurement"] == "loader + step"]
    assert [r["workers"] for r in stepped] == [0, 1]
    for row in stepped:
        assert (row["tasks"], row["images"]) == (2, 8)
        assert 0 < row["wait_seconds"] <= row["seconds"]
        assert row["wait_fraction"] == pytest.approx(row["wait_seconds"] / row["seconds"])


def test_cache_and_decode_rows():
    config = _config(workers=(0,), model=False, decode_sizes=(32, 48))
    rows = measure_pipeline(config, progress=False)
    cache = [r for r in rows if r["measurement"] == "cache"]
    assert [r["setting"] for r in cache] == ["cache off", "cache on"]
    assert cache[1]["speedup"] == pytest.approx(cache[0]["seconds"] / cache[1]["seconds"])
    assert "decoded-image cache" in cache_verdict(rows)
    decode = [r for r in rows if r["measurement"] == "decode"]
    assert [r["size"] for r in decode] == [32, 32, 48, 48]
    assert decode[0]["setting"].startswith("stored 64 px")
    assert all((r["tasks"], r["images"]) == (2, 8) for r in decode)


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="workers"):
        _config(workers=())
    with pytest.raises(ValueError, match=r"--workers must be a number >= 0, got -1"):
        _config(workers=(0, -1))
    too_many = 2 * (os.cpu_count() or 1) + 1  # two per core, as training allows
    refused = rf"--workers={too_many} is more loader processes .*; give a smaller number$"
    with pytest.raises(ValueError, match=refused):
        _config(workers=(0, too_many))
    with pytest.raises(ValueError, match="--workers must be a number >= 0, got 'auto'"):
        _config(workers=("auto",))  # the benchmark measures given counts only
    with pytest.raises(ValueError, match="tasks"):
        _config(tasks=0)


def test_cli_writes_table_and_json_to_out(tmp_path, capsys):
    out = tmp_path / "pipeline"
    argv = ["bench", "pipeline", "--workers", "0", "--size", "32", "--tasks", "2"]
    argv += ["--way", "2", "--shot", "1", "--queries", "1", "--device", "cpu"]
    argv += ["--backbone", "resnet18", "--no-pretrained", "--decode-sizes", "32"]
    argv += ["--out", str(out)]
    assert main(argv) == 0
    table = (out / "pipeline.md").read_text()
    assert table in capsys.readouterr().out
    assert "| loader + step | 0 workers | 2 | 8 |" in table
    raw = json.loads((out / "pipeline.json").read_text())
    assert raw["settings"]["workers"] == [0]
    measured = [(r["measurement"], r["setting"]) for r in raw["rows"]]
    assert measured[:2] == [("loader", "0 workers"), ("loader + step", "0 workers")]
    assert [m for m, _ in measured[2:]] == ["cache", "cache", "decode", "decode"]


def test_cli_default_output_is_under_runs():
    from litemeta.cli import build_parser

    args = build_parser().parse_args(["bench", "pipeline"])
    assert args.out == "runs/bench/pipeline"
    assert args.workers == [0, 1, 2]


def test_header_describes_orbit_tasks_and_says_which_rows_use_emoji():
    experiment = load_experiment("orbit", ["model.image_size=224"])
    config = PipelineConfig(experiment=experiment, tasks=2, model=False)
    header = pipeline_table(config, []).split("Machine:")[0]
    assert header == (
        "Data pipeline: 2 orbit train tasks (one user each, way 2 to min(objects, 15), "
        "ORBIT's training sampler) per row, model at 224 px on cpu. The cache and decode "
        "rows use the built-in emoji set instead (5-way 5-shot, 2 queries per class). "
    )
    emoji = _config(cache=False, decode=False)
    assert pipeline_table(emoji, []).startswith(
        "Data pipeline: 2 emoji train tasks (2-way 1-shot, 1 queries per class) per row, "
        "model at 32 px on cpu; step = LITE h = 1 meta-training step of protonets on "
        "resnet18. Machine:"
    )


def test_cli_size_defaults_to_the_configs_image_size(capsys):
    from litemeta.cli import build_parser

    assert build_parser().parse_args(["bench", "pipeline"]).size is None
    with pytest.raises(SystemExit):
        main(["bench", "pipeline", "--help"])
    assert "(default: the config's model.image_size)" in " ".join(capsys.readouterr().out.split())


def test_cli_refuses_a_task_shape_for_orbit_before_loading(tmp_path, capsys):
    argv = ["bench", "pipeline", "--config", "orbit", "--way", "3", "--out", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("litemeta: error: --way does not apply to orbit tasks")
    assert not any(tmp_path.iterdir())
