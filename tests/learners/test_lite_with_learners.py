"""LITE inside the learners: forward values are exact, gradients are unbiased, and CNAPs'
two nested set functions need independent subsets."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from litemeta.learners import CNAPs, build_learner
from litemeta.lite import LiteSettings

from .helpers import BACKBONE_SIZE, tiny_backbone

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
        lite = LiteSettings(h=3, generator=torch.Generator().manual_seed(seed))
        estimated = learner.adapt(support, support_labels, lite=lite)
        assert torch.equal(estimated(query), exact)


@dataclass
class SameSubsetForBothMaps(LiteSettings):
    """Wrong on purpose: every ``map`` call redraws the same subset (seeded by ``seed``)."""

    seed: int = 0

    def map(self, fn, inputs, labels=None):
        self.generator = torch.Generator().manual_seed(self.seed)
        return super().map(fn, inputs, labels)


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
            gradient(LiteSettings(h=2, generator=torch.Generator().manual_seed(i)))
            for i in range(1000)
        ]
    )
    assert draws.std(dim=0).gt(0).sum() > 500  # most coordinates are estimated, not exact
    inside = within_four_sigma(draws, exact)
    assert inside.all(), f"{(~inside).sum().item()} of {exact.numel()} coordinates biased"


def test_reusing_one_subset_for_both_nested_maps_is_biased(tiny_cnaps_problem):
    gradient = tiny_cnaps_problem
    exact = gradient(None)
    draws = torch.stack([gradient(SameSubsetForBothMaps(h=2, seed=i)) for i in range(300)])
    inside = within_four_sigma(draws, exact)
    assert (~inside).sum() > 0.1 * exact.numel()
