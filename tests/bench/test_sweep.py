"""The grid sweep: estimates from smaller support sizes, configurations that cannot fit."""

from litemeta.bench.step import StepConfig
from litemeta.bench.sweep import DOES_NOT_FIT, Grid, ratio_to_inference, run_grid

MIB = 2**20


def _grid(modes):
    template = StepConfig("protonets", 32, 10, "inference", way=2)
    return Grid(["protonets"], [32], [40, 20, 10], modes, template)


def _fake_measure(calls):
    """Peak 100 MiB + 10 MiB saved per support image for backprop; LITE saves a flat
    150 MiB; inference saves nothing."""

    def measure(config, repeats, memory_limit_bytes):
        calls.append((config.mode, config.support))
        saved = {"backprop": 10 * MIB * config.support, "lite-2": 150 * MIB}.get(config.mode, 0)
        return {"status": "ok", "saved_bytes": saved, "peak_rss_bytes": 100 * MIB + saved}

    return measure


def test_configuration_estimated_beyond_available_memory_is_not_run():
    calls = []
    rows = run_grid(
        _grid(["inference", "backprop", "lite-2"]).configs(),
        available_bytes=lambda device: 450 * MIB,
        measure=_fake_measure(calls),
        progress=False,
    )
    by_key = {(r["mode"], r["support"]): r for r in rows}
    # Backprop at N = 10 and 20 fit (200 and 300 MiB); N = 40 is estimated at 500 MiB.
    assert ("backprop", 40) not in calls
    assert by_key["backprop", 40]["status"] == DOES_NOT_FIT
    assert by_key["backprop", 40]["estimated_peak_bytes"] == 500 * MIB
    assert "peak_bytes" not in by_key["backprop", 40]
    assert by_key["backprop", 20]["status"] == "ok"
    assert by_key["backprop", 20]["estimated_peak_bytes"] == 300 * MIB
    assert all(r["status"] == "ok" for r in rows if r["mode"] in ("inference", "lite-2"))
    # LITE's saved bytes do not grow from N = 10 to 20, so N = 40 is estimated at N = 20's
    # 250 MiB peak and runs; from N = 10 alone the proportional guess was 400 MiB.
    assert by_key["lite-2", 20]["estimated_peak_bytes"] == 400 * MIB
    assert by_key["lite-2", 40]["estimated_peak_bytes"] == 250 * MIB
    assert sorted(calls) == sorted(
        [
            ("inference", 10),
            ("inference", 20),
            ("inference", 40),
            ("backprop", 10),
            ("backprop", 20),
            ("lite-2", 10),
            ("lite-2", 20),
            ("lite-2", 40),
        ]
    )


def test_ratio_to_inference_uses_the_estimate_where_not_run():
    rows = run_grid(
        _grid(["inference", "backprop", "lite-2"]).configs(),
        available_bytes=lambda device: 450 * MIB,
        measure=_fake_measure([]),
        progress=False,
    )
    ratio_to_inference(rows, "peak_bytes", "ratio", fallback="estimated_peak_bytes")
    by_key = {(r["mode"], r["support"]): r["ratio"] for r in rows}
    assert by_key["inference", 40] == 1.0
    assert by_key["backprop", 10] == 2.0
    assert by_key["backprop", 40] == 5.0


def test_repeated_values_in_the_grid_are_measured_once():
    calls = []
    template = StepConfig("protonets", 32, 10, "inference", way=2)
    grid = Grid(["protonets"] * 2, [32, 32], [10, 20, 10], ["backprop", "backprop"], template)
    rows = run_grid(
        grid.configs(),
        available_bytes=lambda device: 10**12,
        measure=_fake_measure(calls),
        progress=False,
    )
    assert calls == [("backprop", 10), ("backprop", 20)]
    assert [(r["support"], r["status"]) for r in rows] == [(10, "ok"), (20, "ok")]
