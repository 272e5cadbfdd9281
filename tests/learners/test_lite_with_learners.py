"""LITE inside the learners: forward values are exact, gradients are unbiased, and CNAPs'
two nested set functions need independent subsets."""

from dataclasses import dataclass, replace

import pytest
import torch
from torch import nn

from litemeta.bench.saved_tensors import SavedTensorMeter
from litemeta.learners import LEARNERS, CNAPs, build_learner
from litemeta.lite import LitePass, LiteSettings, RowCouplingError
from litemeta.tasks import Task
from litemeta.training import backward_task

from .helpers import BACKBONE_SIZE, colour_task, tiny_backbone, tiny_options

TINY_CNAPS = {"encoder_image_size": 32, "encoder_channels": 8}


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("protonets", {}),
        ("protonets", {"meta_train": "film"}),
        ("cnaps", TINY_CNAPS),
        ("simple_cnaps", TINY_CNAPS),
    ],
)
def test_logits_are_identical_with_and_without_lite(task, name, options):
    support, support_labels, query, _ = task
    torch.manual_seed(0)
    learner = build_learner(name, image_size=BACKBONE_SIZE, **options).train()
    exact = learner.adapt(support, support_labels)(query)
    for seed in range(3):
        lite = LitePass(LiteSettings(h=3), torch.Generator().manual_seed(seed))
        estimated = learner.adapt(support, support_labels, lite=lite)
        assert torch.equal(estimated(query), exact)


@dataclass(frozen=True)
class SameSubsetForBothMaps(LitePass):
    """Wrong on purpose: every ``map`` call redraws the same subset (seeded by ``seed``)."""

    seed: int = 0

    def map(self, fn, inputs, labels=None, **options):
        same = LitePass(self.settings, torch.Generator().manual_seed(self.seed))
        return same.map(fn, inputs, labels, **options)


@pytest.fixture
def tiny_cnaps_problem():
    """A tiny float64 CNAPs with random (non-zero) generators, a 6-image support set and
    a query set; returns a function mapping LITE settings (or None) to the loss gradient."""
    torch.manual_seed(0)
    learner = CNAPs(
        tiny_backbone(),
        encoder_image_size=32,
        encoder_channels=4,
    ).double()
    generator = learner.film_generator
    for scale in [*generator.gamma_regularizers, *generator.beta_regularizers]:
        nn.init.normal_(scale, 0.0, 0.5)  # FiLM far from the identity
    data = torch.Generator().manual_seed(1)
    support = torch.rand(6, 3, 8, 8, generator=data, dtype=torch.float64)
    query = torch.rand(6, 3, 8, 8, generator=data, dtype=torch.float64)
    labels = torch.arange(3).repeat(2)
    parameters = [p for p in learner.parameters() if p.requires_grad]

    def gradient(lite):
        classifier = learner.adapt(support, labels, lite=lite)
        loss = nn.functional.cross_entropy(classifier(query), labels) + classifier.regularizer
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, parameters)])

    return gradient


def within_four_sigma(draws: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """Per coordinate: is the Monte-Carlo mean within 4 standard errors of the exact value?"""
    mean = draws.mean(dim=0)
    standard_error = draws.std(dim=0) / draws.shape[0] ** 0.5
    return (mean - exact).abs() <= 4 * standard_error + 1e-9 * exact.abs().max()


def test_cnaps_lite_gradient_is_unbiased_with_independent_subsets(tiny_cnaps_problem):
    gradient = tiny_cnaps_problem
    exact = gradient(None)
    draws = torch.stack(
        [
            gradient(LitePass(LiteSettings(h=2), torch.Generator().manual_seed(i)))
            for i in range(1000)
        ]
    )
    assert draws.std(dim=0).gt(0).sum() > 500  # most coordinates are estimated, not exact
    inside = within_four_sigma(draws, exact)
    assert inside.all(), f"{(~inside).sum().item()} of {exact.numel()} coordinates biased"


def test_reusing_one_subset_for_both_nested_maps_is_biased(tiny_cnaps_problem):
    gradient = tiny_cnaps_problem
    exact = gradient(None)
    draws = torch.stack(
        [gradient(SameSubsetForBothMaps(LiteSettings(h=2), seed=i)) for i in range(300)]
    )
    inside = within_four_sigma(draws, exact)
    assert (~inside).sum() > 0.1 * exact.numel()


def _task(support, labels, query, query_labels) -> Task:
    names = [f"class {c}" for c in range(int(labels.max()) + 1)]
    return Task(support, labels, query, query_labels, names)


def _spliced_gradient(learner, task, lite):
    """The reference for the deferred path: LITE's rows spliced into the graph as
    ``lite_map`` does on its own, every query in one batch."""
    support, support_labels, query, query_labels = task
    classifier = learner.adapt(support, support_labels, lite=lite)
    logits = classifier(query)
    loss = nn.functional.cross_entropy(logits, query_labels, reduction="sum") / len(query)
    loss = loss + classifier.regularizer
    parameters = [p for p in learner.parameters() if p.requires_grad]
    return float(loss.detach()), torch.autograd.grad(loss, parameters)


@pytest.mark.parametrize("rows_with_queries", [False, True])
@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_deferred_support_rows_give_the_spliced_gradient(name, rows_with_queries):
    """``backward_task`` recomputes LITE's rows after the query batches, a chunk at a time
    (or in the last query batch's pass); the gradient must equal the one with the rows in
    the graph (same draw), for every registered meta-trainable learner, FiLM-generating
    ones included."""
    if not LEARNERS[name].meta_trainable:
        pytest.skip(f"{name} has nothing to meta-train")
    task = colour_task(way=3, shots=4, queries=5)
    torch.manual_seed(0)
    learner = LEARNERS[name](tiny_backbone(16), **tiny_options(name)).double()
    support, labels, query, query_labels = task
    if hasattr(learner, "film_generator"):
        for scale in [*learner.film_generator.gamma_regularizers]:
            nn.init.normal_(scale, 0.0, 0.5)  # generated FiLM far from the identity

    learner.chunk_size = 2

    lite = LiteSettings(h=5, rows_with_queries=rows_with_queries)
    expected_loss, expected = _spliced_gradient(
        learner, task, LitePass(lite, torch.Generator().manual_seed(4))
    )
    learner.zero_grad()
    outcome = backward_task(
        learner,
        _task(support, labels, query, query_labels),
        lite=lite,
        generator=torch.Generator().manual_seed(4),
        query_batch_size=4,
    )
    assert outcome.loss == pytest.approx(expected_loss, rel=1e-6)  # summed in float32
    parameters = [p for p in learner.parameters() if p.requires_grad]
    largest = max(float(g.abs().max()) for g in expected)
    assert largest > 0
    for parameter, reference in zip(parameters, expected, strict=True):
        # backward_task takes the cross-entropy in float32: float32 rounding, not float64.
        torch.testing.assert_close(parameter.grad, reference, rtol=1e-5, atol=1e-6 * largest)


def test_deferred_rows_and_queries_are_never_held_together():
    """Peak bytes autograd holds during a LITE step: the support rows' activations and a
    query batch's are held one after the other, not added up as with the rows spliced in."""
    task = colour_task(way=3, shots=6, queries=4)
    support, labels, query, query_labels = task
    torch.manual_seed(0)
    learner = build_learner("protonets", image_size=BACKBONE_SIZE)
    excluded = [*learner.parameters(), *learner.buffers()]

    def peak(step) -> int:
        meter = SavedTensorMeter(exclude=excluded)
        with meter.watching():
            step()
        learner.zero_grad(set_to_none=True)
        return meter.peak_bytes

    lite = LiteSettings(h=6)

    def draws():
        return torch.Generator().manual_seed(0)

    def deferred():
        backward_task(
            learner,
            _task(support, labels, query, query_labels),
            lite=lite,
            generator=draws(),
            query_batch_size=6,
        )

    def spliced():
        _, grads = _spliced_gradient(learner, task, LitePass(lite, draws()))
        del grads

    def rows_alone():
        LitePass(LiteSettings(h=None)).map(learner.backbone, support[:6]).sum().backward()

    def fused():
        backward_task(
            learner,
            _task(support, labels, query, query_labels),
            lite=replace(lite, rows_with_queries=True),
            generator=draws(),
            query_batch_size=6,
        )

    rows = peak(rows_alone)
    assert peak(spliced) > 2.7 * rows  # 6 rows + 12 queries at once
    assert peak(deferred) < 1.2 * rows  # 6 rows, then 6 queries at a time
    assert 1.8 * rows < peak(fused) < 2.2 * rows  # 6 queries, then 6 rows + 6 queries


@pytest.mark.parametrize(("rows_with_queries", "passes"), [(False, 3), (True, 2)])
def test_rows_with_queries_saves_one_backbone_pass(rows_with_queries, passes):
    """Backbone calls with autograd in a LITE step with 8 queries in batches of 4: two query
    batches and the drawn rows, or the rows inside the last query batch."""
    support, labels, query, query_labels = colour_task(way=2, shots=5, queries=4)
    learner = build_learner("protonets", image_size=BACKBONE_SIZE)
    calls = []
    learner.backbone.register_forward_hook(
        lambda module, inputs, output: calls.append(output.requires_grad)
    )
    backward_task(
        learner,
        _task(support, labels, query, query_labels),
        lite=LiteSettings(h=3, rows_with_queries=rows_with_queries),
        generator=torch.Generator().manual_seed(0),
        query_batch_size=4,
    )
    assert calls.count(True) == passes
    assert calls.count(False) == 1  # the first pass over the support set


def test_deferred_rows_still_refuse_active_dropout():
    task = colour_task(way=3, shots=4, queries=2)
    torch.manual_seed(0)
    backbone = tiny_backbone(16)
    backbone.model = nn.Sequential(backbone.model, nn.Dropout(0.1))
    learner = LEARNERS["protonets"](backbone).eval()
    learner.backbone.model[1].train()
    with pytest.raises(RowCouplingError, match="differ from the first pass"):
        backward_task(
            learner,
            _task(*task),
            lite=LiteSettings(h=5),
            generator=torch.Generator().manual_seed(0),
            query_batch_size=6,
        )


def test_lite_maps_use_the_learners_chunk_size():
    """One chunk size: the learner's bounds LITE's first pass and its recomputation too."""
    support, labels, query, query_labels = colour_task(way=3, shots=4, queries=5)
    learner = LEARNERS["protonets"](tiny_backbone(16))
    learner.chunk_size = 5
    sizes = []
    learner.backbone.register_forward_hook(lambda module, inputs, output: sizes.append(len(output)))
    backward_task(
        learner,
        _task(support, labels, query, query_labels),
        lite=LiteSettings(h=7),
        generator=torch.Generator().manual_seed(0),
        query_batch_size=100,
    )
    assert sizes == [5, 5, 2, 15, 5, 2]  # first pass, the queries, then the 7 drawn rows
