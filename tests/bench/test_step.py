"""The measured step: bytes saved for backward grow with N for full back-propagation and
stay flat with LITE (Bronskill et al., NeurIPS 2021)."""

import pytest
import torch

from litemeta.bench.step import StepConfig, measure_step, parse_mode


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _saved_bytes(mode: str, support: int) -> int:
    config = StepConfig(
        "protonets",
        32,
        support,
        mode,
        way=2,
        queries_per_class=1,
        query_batch_size=1,
        chunk_size=4,
        backbone="resnet18",
        pretrained=False,
        threads=1,
    )
    return measure_step(vars(config))["saved_bytes"]


def test_saved_bytes_grow_with_support_for_backprop_and_stay_flat_for_lite():
    backprop = [_saved_bytes("backprop", n) for n in (4, 8)]
    lite = [_saved_bytes("lite-2", n) for n in (4, 8)]
    backprop_per_image = (backprop[1] - backprop[0]) / 4
    assert backprop_per_image > 100_000  # a resnet18's activations at 32 px
    # LITE keeps the activations of h = 2 images whatever N; only N feature rows grow.
    assert lite[1] - lite[0] < 0.01 * (backprop[1] - backprop[0])
    assert _saved_bytes("inference", 8) == 0


def test_modes_are_validated():
    assert parse_mode("lite-8") == 8
    assert parse_mode("lite-8-fused") == 8
    assert StepConfig("protonets", 32, 4, "lite-2-fused", way=2).lite_settings().rows_with_queries
    assert not StepConfig("protonets", 32, 4, "lite-2", way=2).lite_settings().rows_with_queries
    assert parse_mode("backprop") is None
    for wrong in ("lite-0", "lite-8-fast", "backprop-fused"):
        with pytest.raises(ValueError, match="unknown mode"):
            parse_mode(wrong)
    with pytest.raises(ValueError, match="multiple of way"):
        StepConfig("protonets", 32, 5, "inference", way=2)
