"""`litemeta bench fit`: the largest N and h under each budget, from the measured cost per
image; `--check` runs a real step at the planned h and meters it."""

import csv
import math

from litemeta.cli import main


def _rows(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_bench_fit_tables_the_largest_n_and_h_per_budget(tmp_path, capsys):
    argv = ["bench", "fit", "--budget", "0.3", "1", "0.01", "--learners", "protonets"]
    argv += ["--backbones", "resnet18", "--sizes", "32", "--way", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    (row,) = _rows(tmp_path / "fit.csv")
    table = (tmp_path / "fit.md").read_text()
    assert table in capsys.readouterr().out and "Not counted" in table
    per_image = float(row["saved MiB / image"]) + float(row["working MiB / image"])
    fixed = float(row["fixed MiB"])
    for budget in (0.3, 1):
        room = (budget * 1024 - fixed) / per_image  # images with autograd that fit
        # LITE holds the h drawn images; full back-propagation N support + 10 queries.
        assert int(row[f"h, LITE, {budget:g} GiB"]) == math.floor(room)
        assert int(row[f"N, full back-prop, {budget:g} GiB"]) == math.floor(room) - 10
    assert row["h, LITE, 0.01 GiB"] == "does not fit"  # ResNet-18 alone takes 43 MiB
    assert row["N, full back-prop, 0.01 GiB"] == "does not fit"


def test_bench_fit_check_meters_a_step_at_the_planned_h(tmp_path):
    argv = ["bench", "fit", "--check", "--budget", "0.3", "--learners", "protonets"]
    argv += ["--backbones", "resnet18", "--sizes", "32", "--out", str(tmp_path)]
    assert main(argv) == 0
    (row,) = _rows(tmp_path / "fit-check.csv")
    assert int(row["N"]) >= int(row["h"]) > 10
    assert float(row["measured MiB"]) <= 0.3 * 1024
    assert 0 <= float(row["unused %"]) <= 15
    assert float(row["saved, measured MiB"]) <= 1.05 * float(row["saved, planned MiB"])
