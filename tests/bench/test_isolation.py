"""run_isolated: each configuration's own peak memory, and how a child failed."""

from litemeta.bench.isolation import run_isolated

from . import children

MIB = children.MIB


def test_reports_the_childs_peak_rss():
    row = run_isolated(children.allocate, {"mebibytes": 200})
    assert row["status"] == "ok"
    assert row["allocated_bytes"] == 200 * MIB
    assert row["peak_rss_bytes"] >= 200 * MIB


def test_memory_error_is_out_of_memory():
    assert run_isolated(children.raise_memory_error, {})["status"] == "out of memory"


def test_allocation_past_the_memory_limit_is_out_of_memory():
    row = run_isolated(children.allocate, {"mebibytes": 1024}, memory_limit_bytes=512 * MIB)
    assert row["status"] == "out of memory"
    assert row["peak_rss_bytes"] < 1024 * MIB  # refused, never touched


def test_killed_child_is_out_of_memory():
    assert run_isolated(children.kill_self, {})["status"] == "out of memory"


def test_crash_and_error_are_told_apart():
    assert run_isolated(children.exit_with, {"code": 3})["status"] == "crashed (exit code 3)"
    row = run_isolated(children.fail, {})
    assert row["status"] == "error"
    assert "ValueError: a bug" in row["error"]
