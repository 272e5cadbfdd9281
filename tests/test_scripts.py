"""The scripts in scripts/: `gpu-check`'s quick sections in its CPU trial mode, and
`alternate-steps`."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parents[1] / "scripts"


def test_the_quick_sections_run_on_the_cpu_and_report_agreement(tmp_path):
    sections = "frozen_layers row_agreement simple_cnaps_half_precision graphed_passes memory_plan"
    environment = {
        **os.environ,
        "GPU_CHECK_DEVICE": "cpu",
        "GPU_CHECK_TINY": "1",
        "GPU_CHECK_SECTIONS": sections,
    }
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS / "gpu-check"), str(tmp_path)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    summary = (tmp_path / "summary.md").read_text()
    frozen = re.search(
        r"frozen-layer backward.*relative difference ([0-9.e+-]+) \| saved for backward "
        r"(\d+) vs (\d+) MiB",
        summary,
    )
    assert frozen is not None, summary
    assert float(frozen[1]) < 1e-5  # float32 on the CPU: the same gradients
    assert int(frozen[2]) < int(frozen[3])  # the frozen layers kept fewer bytes
    # A row computed alone or in a chunk: equal up to float32 summation order (exactly equal
    # with some BLAS thread counts, not all), and within the tolerance the summary names.
    rows = re.search(
        r"row agreement, fp32 .* relative difference ([0-9.e+-]+) \| tolerance ([0-9.e+-]+)",
        summary,
    )
    assert rows is not None, summary
    assert float(rows[1]) < 1e-5 and float(rows[1]) <= float(rows[2])
    assert "Simple CNAPs LITE step, bf16" in summary and "all finite: True" in summary
    assert "eager vs CUDA graph | needs a CUDA GPU" in summary
    assert "h: auto against the GPU's peak memory | needs a CUDA GPU" in summary


def test_alternate_steps_times_each_mode_in_turn():
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS / "alternate-steps"), "protonets", "32", "20", "1", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = completed.stdout.splitlines()
    expected = ["round 1 inference", "round 1 lite-8", "round 2 inference", "round 2 lite-8"]
    assert len(lines) == len(expected)
    for line, mode in zip(lines, expected, strict=True):
        assert re.fullmatch(rf"{mode} \d+\.\d\d s", line), line


@pytest.mark.slow
def test_openset_background_compares_backgrounds_on_emoji_tasks():
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS / "openset-background"), "--tasks", "100"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    row = r"^\| ([^|]+) \| (0\.\d+) \| ([\d.]+) \| ([\d.]+) \|$"
    rows = re.findall(row, completed.stdout, re.MULTILINE)
    table = {name: [float(v) for v in values] for name, *values in rows}
    assert len(table) == 12, completed.stdout
    chosen = table["within-class, 128 classes, 64 directions, shrinkage 1"]
    # The pretrained backbone on the validation split: the chosen background ranks untaught
    # emoji above the mean-only one (0.913 against 0.861 over 300 tasks, docs/benchmarks.md).
    mean_only = table["mean only, 128 classes"]
    assert chosen[0] > mean_only[0] + 0.02
    # and puts more untaught emoji below the known images' 5 % quantile (51.9 % against 31.1 %)
    assert chosen[2] > mean_only[2] + 5
    for auroc_value, at_3, at_5 in table.values():
        assert 0.5 < auroc_value < 1 and 0 <= at_3 <= at_5 <= 100
