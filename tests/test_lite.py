"""The LITE estimator against the exact full-set gradient."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from litemeta.lite import (
    FirstPasses,
    LitePass,
    LiteSettings,
    RowCouplingError,
    check_chunk_size,
    check_h,
    draw_subset,
    lite_map,
)

DRAWS = 2000
SIGMAS = 4.0


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))


def _flat_grad(loss: Tensor, params: list[Tensor]) -> Tensor:
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])


def _linear_loss(features: Tensor, labels: Tensor) -> Tensor:
    weights = torch.linspace(-1.0, 1.0, features.numel()).view_as(features)
    return (features * weights).sum()


def _mahalanobis_loss(features: Tensor, labels: Tensor) -> Tensor:
    """A Simple-CNAPs-like loss: prototypes, blended covariances, Mahalanobis logits."""
    way, dim = int(labels.max()) + 1, features.shape[1]
    task_cov = torch.cov(features.T)
    queries = features[::3].detach() + 0.1
    logits = []
    for c in range(way):
        members = features[labels == c]
        blend = members.shape[0] / (members.shape[0] + 1)
        cov = blend * torch.cov(members.T) + (1 - blend) * task_cov + torch.eye(dim)
        diff = queries - members.mean(0)
        logits.append(-(diff * torch.linalg.solve(cov, diff.T).T).sum(1))
    return nn.functional.cross_entropy(torch.stack(logits, 1), labels[::3])


def _z_scores(draws: Tensor, exact: Tensor) -> Tensor:
    standard_error = draws.std(0) / draws.shape[0] ** 0.5
    return (draws.mean(0) - exact).abs() / standard_error.clamp_min(1e-12)


def _lite_gradient_draws(
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    *,
    stratified: bool,
    draws: int = DRAWS,
    unbiased_scaling: bool = True,
) -> tuple[Tensor, Tensor]:
    net = _mlp()
    params = list(net.parameters())
    generator = torch.Generator().manual_seed(1234)
    inputs = torch.randn(64, 6, generator=generator)
    labels = torch.arange(4).repeat_interleave(torch.tensor([8, 12, 20, 24]))
    exact = _flat_grad(loss_fn(net(inputs), labels), params)

    def one_draw() -> Tensor:
        features = lite_map(
            net,
            inputs,
            8,
            labels=labels,
            stratified=stratified,
            generator=generator,
            unbiased_scaling=unbiased_scaling,
        )
        return _flat_grad(loss_fn(features, labels), params)

    return torch.stack([one_draw() for _ in range(draws)]), exact


LOSSES = pytest.mark.parametrize(
    "loss_fn", [_linear_loss, _mahalanobis_loss], ids=["linear", "mahalanobis"]
)
SAMPLING = pytest.mark.parametrize("stratified", [False, True], ids=["uniform", "stratified"])


@LOSSES
@SAMPLING
def test_mean_of_many_draws_matches_exact_gradient(loss_fn, stratified: bool) -> None:
    draws, exact = _lite_gradient_draws(loss_fn, stratified=stratified)
    z = _z_scores(draws, exact)
    assert z.max() < SIGMAS, f"coordinate {int(z.argmax())} is {float(z.max()):.1f} sigma off"


@LOSSES
@SAMPLING
def test_band_rejects_the_estimator_without_its_scale(loss_fn, stratified: bool) -> None:
    """The unbiasedness test has power: without the N/h (N_c/h_c) scale, as in the official
    LITE code, the mean gradient falls far outside the band."""
    draws, exact = _lite_gradient_draws(
        loss_fn, stratified=stratified, draws=500, unbiased_scaling=False
    )
    assert (_z_scores(draws, exact) > SIGMAS).sum() > exact.numel() // 2


@pytest.mark.parametrize("h", [None, 64, 100])
def test_full_subset_reproduces_exact_gradient(h: int | None) -> None:
    net = _mlp()
    params = list(net.parameters())
    inputs = torch.randn(64, 6)
    labels = torch.arange(4).repeat(16)
    exact = _flat_grad(_mahalanobis_loss(net(inputs), labels), params)
    lite = _flat_grad(_mahalanobis_loss(lite_map(net, inputs, h, chunk_size=10), labels), params)
    torch.testing.assert_close(lite, exact, rtol=1e-5, atol=1e-6)


def test_forward_values_equal_full_forward() -> None:
    net = _mlp()
    inputs = torch.randn(50, 6)
    expected = net(inputs)
    for chunk_size in (None, 7, 50):
        out = lite_map(
            net, inputs, 5, chunk_size=chunk_size, generator=torch.Generator().manual_seed(0)
        )
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
        assert out.requires_grad


def test_gradient_reaches_inputs_only_through_the_drawn_rows_scaled_by_n_over_h() -> None:
    weight = torch.randn(6, 3)
    inputs = torch.randn(20, 6, requires_grad=True)
    lite_map(
        lambda x: x @ weight, inputs, 4, generator=torch.Generator().manual_seed(3)
    ).sum().backward()
    touched = inputs.grad.abs().sum(1) > 0
    assert int(touched.sum()) == 4
    expected_row = weight.sum(1) * (20 / 4)
    torch.testing.assert_close(inputs.grad[touched], expected_row.expand(4, 6))


def test_draw_is_reproducible_from_generator() -> None:
    first = draw_subset(100, 10, generator=torch.Generator().manual_seed(7))
    second = draw_subset(100, 10, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first[0], second[0])
    assert len(set(first[0].tolist())) == 10
    other = draw_subset(100, 10, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(first[0], other[0])


def test_stratified_draw_represents_every_class_with_per_class_scales() -> None:
    labels = torch.tensor([0] * 3 + [1] * 30 + [2] * 67)
    indices, scales = draw_subset(100, 10, labels=labels, stratified=True)
    drawn = labels[indices]
    counts = torch.bincount(drawn, minlength=3)
    assert counts.sum() == 10 and (counts >= 1).all()
    for c, size in enumerate((3, 30, 67)):
        assert torch.allclose(
            scales[drawn == c], torch.tensor(size / counts[c].item(), dtype=scales.dtype)
        )
    # The scales make the subset stand for the whole set: they sum to N.
    assert float(scales.sum()) == pytest.approx(100)


def test_stratified_draw_refuses_fewer_rows_than_classes() -> None:
    with pytest.raises(ValueError, match="h >= the number of classes"):
        draw_subset(10, 2, labels=torch.arange(5).repeat(2), stratified=True)


def _saved_bytes(run: Callable[[], Tensor]) -> int:
    total = 0

    def pack(tensor: Tensor) -> Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return total


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def test_memory_kept_for_backward_does_not_grow_with_set_size() -> None:
    net = _conv_net()
    small, large = torch.rand(64, 3, 16, 16), torch.rand(512, 3, 16, 16)
    gen = torch.Generator().manual_seed(0)
    lite_small = _saved_bytes(lambda: lite_map(net, small, 8, chunk_size=64, generator=gen))
    lite_large = _saved_bytes(lambda: lite_map(net, large, 8, chunk_size=64, generator=gen))
    assert abs(lite_large - lite_small) < 0.1 * lite_small
    full_small = _saved_bytes(lambda: lite_map(net, small, None, chunk_size=64))
    full_large = _saved_bytes(lambda: lite_map(net, large, None, chunk_size=64))
    assert 7.0 < full_large / full_small < 8.5
    assert full_large > 50 * lite_large


def test_train_mode_batch_norm_is_refused_with_the_module_named() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten())
    inputs = torch.rand(16, 3, 8, 8)
    with pytest.raises(RowCouplingError, match=r"'1' \(BatchNorm2d\).*eval mode"):
        lite_map(net, inputs, 4)
    with pytest.raises(RowCouplingError, match="BatchNorm2d"):
        lite_map(lambda x: net(x), inputs, 4)  # a closure is caught at run time too
    net.eval()
    torch.testing.assert_close(lite_map(net, inputs, 4), net(inputs))


def test_stochastic_rows_are_refused() -> None:
    net = nn.Sequential(nn.Linear(6, 32), nn.Dropout(0.5))
    with pytest.raises(RowCouplingError, match="eval mode"):
        lite_map(net, torch.randn(32, 6), 4)


def test_non_finite_rows_are_named_as_such_not_as_coupling() -> None:
    net = nn.Linear(6, 4)
    with torch.no_grad():
        net.weight[0, 0] = float("nan")  # as after a diverged training step
    with pytest.raises(RowCouplingError, match=r"not finite \(nan\).*lower the learning rate"):
        lite_map(net, torch.randn(32, 6), 4)


def test_rejects_empty_set_and_bad_h_or_chunk_size() -> None:
    net = _mlp()
    with pytest.raises(ValueError, match="non-empty"):
        lite_map(net, torch.empty(0, 6), 4)
    with pytest.raises(ValueError, match="h must be at least 1"):
        lite_map(net, torch.randn(10, 6), 0)
    with pytest.raises(TypeError, match=r"h must be a whole number or None, got 2\.5"):
        lite_map(net, torch.randn(10, 6), 2.5)
    with pytest.raises(ValueError, match=r"chunk_size must be at least 1 image .*, got 0"):
        lite_map(net, torch.randn(10, 6), 4, chunk_size=0)


def _nested_gradient(
    encoder: nn.Module, inputs: Tensor, first: LitePass, second: LitePass
) -> Tensor:
    """CNAPs' shape: a set encoder pooled into a task embedding that modulates a second map."""
    task_embedding = first.map(encoder, inputs).mean(0)
    features = second.map(lambda x: torch.tanh(x * task_embedding), inputs)
    return _flat_grad((features.sum(0) ** 2).sum(), list(encoder.parameters()))


def test_nested_maps_need_independent_subsets() -> None:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(3, 3), nn.Tanh())
    inputs = torch.randn(6, 3) * 2
    full = LitePass(LiteSettings(h=None))
    exact = _nested_gradient(encoder, inputs, full, full)

    shared_seed = torch.Generator().manual_seed(5)
    independent = LitePass(LiteSettings(h=1), shared_seed)
    draws = torch.stack(
        [_nested_gradient(encoder, inputs, independent, independent) for _ in range(DRAWS)]
    )
    assert _z_scores(draws, exact).max() < SIGMAS

    same_subset = []
    for draw in range(DRAWS):
        # Two generators in the same state draw the same subset for both maps.
        first, second = (
            LitePass(LiteSettings(h=1), torch.Generator().manual_seed(draw)) for _ in range(2)
        )
        same_subset.append(_nested_gradient(encoder, inputs, first, second))
    assert _z_scores(torch.stack(same_subset), exact).max() > SIGMAS


def test_gradient_checkpointing_gives_the_same_gradient_and_keeps_less() -> None:
    net = _conv_net()
    inputs = torch.rand(64, 3, 16, 16)
    params = list(net.parameters())

    def gradient(**options) -> Tensor:
        generator = torch.Generator().manual_seed(0)
        out = lite_map(net, inputs, 16, chunk_size=16, generator=generator, **options)
        return _flat_grad((out**2).sum(), params)

    torch.testing.assert_close(gradient(gradient_checkpointing=True), gradient())
    full = _saved_bytes(lambda: lite_map(net, inputs, None, chunk_size=16))
    checkpointed = _saved_bytes(
        lambda: lite_map(net, inputs, None, chunk_size=16, gradient_checkpointing=True)
    )
    assert checkpointed == inputs.numel() * inputs.element_size()  # only the chunk inputs
    assert checkpointed < full / 5


class _BatchSizeNoise(nn.Module):
    """A row-wise map whose result depends (deterministically) on the batch it runs in, with
    a relative error of 5e-3 - what TF32 convolutions produced on an H100."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 16)

    def forward(self, x: Tensor) -> Tensor:
        out = self.linear(x)
        pattern = torch.cos(torch.arange(out.shape[1], dtype=out.dtype) * (1.0 + x.shape[0]))
        noise = pattern * out.detach().norm(dim=1, keepdim=True) / pattern.norm()
        return out + 5e-3 * noise


def _relative_gap(net: nn.Module, inputs: Tensor) -> float:
    with torch.no_grad():
        alone, in_batch = net(inputs[:4]), net(inputs)[:4]
    return float(((in_batch - alone).norm(dim=1) / alone.norm(dim=1)).max())


def test_reduced_precision_noise_passes_but_dropout_and_batch_norm_do_not(monkeypatch) -> None:
    torch.manual_seed(0)
    net, inputs = _BatchSizeNoise(), torch.randn(32, 6)
    assert 4e-3 < _relative_gap(net, inputs) < 1.2e-2  # the noise really is there
    with pytest.raises(RowCouplingError, match="fp32 precision in effect"):
        lite_map(net, inputs, 4, chunk_size=16)  # full float32: 5e-3 is too much

    import litemeta.lite.rows

    monkeypatch.setattr(litemeta.lite.rows, "effective_precision", lambda device, dtype: "tf32")
    expected = net_in_chunks(net, inputs)
    torch.testing.assert_close(lite_map(net, inputs, 4, chunk_size=16), expected)
    dropout = nn.Sequential(net, nn.Dropout(0.1))
    with pytest.raises(RowCouplingError, match="tf32"):
        lite_map(dropout, inputs, 4, chunk_size=16)
    norm = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16))
    with pytest.raises(RowCouplingError, match="BatchNorm1d"):
        lite_map(norm, inputs, 4, chunk_size=16)

    monkeypatch.undo()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 autocast: a looser bound
        lite_map(net, inputs, 4, chunk_size=16)
        with pytest.raises(RowCouplingError, match="bf16"):
            lite_map(dropout, inputs, 4, chunk_size=16)


def net_in_chunks(net: nn.Module, inputs: Tensor) -> Tensor:
    with torch.no_grad():
        return torch.cat([net(chunk) for chunk in inputs.split(16)])


def test_bf16_gradient_scale_is_applied_in_float32(monkeypatch) -> None:
    """Mean over every subset of the LITE gradient = the full gradient, under bf16 autocast.

    N/h = 5/3 is not a bf16 number (bf16 rounds it to 1.664, a -0.16% bias); scaling in
    float32 leaves only bf16's round-to-nearest of each scaled row gradient, which does not
    bias the mean.
    """
    from itertools import combinations

    import litemeta.lite.estimator

    torch.manual_seed(0)
    net = nn.Linear(64, 48)
    inputs, num_rows, h = torch.randn(5, 64), 5, 3
    params = list(net.parameters())
    weights = torch.randn(num_rows, 48)

    def gradient(indices: list[int] | None) -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if indices is None:
                out = lite_map(net, inputs, None)
            else:
                draw = (torch.tensor(indices), torch.full((h,), num_rows / h, dtype=torch.float64))
                monkeypatch.setattr(litemeta.lite.estimator, "draw_subset", lambda *a, **k: draw)
                out = lite_map(net, inputs, h)
        return _flat_grad((out.float() * weights).sum(), params).double()

    exact = gradient(None)
    subsets = list(combinations(range(num_rows), h))
    mean = torch.stack([gradient(list(s)) for s in subsets]).mean(0)
    ratio = float(mean @ exact / (exact @ exact))
    assert abs(ratio - 1) < 3e-4, ratio  # a bf16 scale gives 1 - 1.6e-3
    assert float((mean - exact).norm() / exact.norm()) < 3e-3


def test_first_passes_are_computed_once_for_repeated_adaptations():
    net = _mlp()
    inputs = torch.randn(10, 6)
    calls = []

    def fn(rows: Tensor) -> Tensor:
        calls.append(torch.is_grad_enabled())
        return net(rows)

    kept = FirstPasses()
    outputs = []
    for seed in range(3):
        kept.rewind()
        generator = torch.Generator().manual_seed(seed)
        outputs.append(lite_map(fn, inputs, 4, generator=generator, first_passes=kept))
    assert calls.count(False) == 1 and calls.count(True) == 3  # one first pass, three draws
    for values in outputs:
        torch.testing.assert_close(values, net(inputs))
    kept.rewind()
    with pytest.raises(ValueError, match="has 9 rows, its kept first pass 10"):
        lite_map(fn, inputs[:9], 4, first_passes=kept)


def test_h_and_the_chunk_size_each_have_one_check() -> None:
    for h in (None, 1, 40, torch.tensor(3).item()):
        check_h(h)
    check_h("auto", auto=True)
    check_h(5, set_size=5)
    with pytest.raises(TypeError, match="h must be a whole number or None, got 'auto'"):
        check_h("auto")
    with pytest.raises(TypeError, match=r"lite\.h must be null, auto or a whole number, got True"):
        check_h(True, name="lite.h", auto=True)
    with pytest.raises(ValueError, match=r"lite\.h must be null, auto or at least 1, got 0"):
        check_h(0, name="lite.h", auto=True)
    with pytest.raises(ValueError, match=r"--h must lie in 1\.\.5 \(the set size\), got 6"):
        check_h(6, name="--h", set_size=5)
    check_chunk_size(None, optional=True)
    check_chunk_size(1)
    with pytest.raises(TypeError, match="chunk_size must be a whole number, got None"):
        check_chunk_size(None)
    with pytest.raises(ValueError, match=r"model\.chunk_size must be at least 1 image, got -2"):
        check_chunk_size(-2, name="model.chunk_size")
