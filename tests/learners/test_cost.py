"""Every learner reports its test-time cost of personalisation."""

import pytest

from litemeta.learners import LEARNERS, build_learner

from .helpers import BACKBONE_SIZE, colour_task, tiny_options


@pytest.fixture(scope="module")
def costs():
    support, labels, *_ = colour_task(way=3, shots=4, queries=1)
    results = {}
    for name in LEARNERS:
        learner = build_learner(name, image_size=BACKBONE_SIZE, **tiny_options(name)).eval()
        results[name] = (learner, learner.adaptation_cost(support, labels))
    return results


def test_every_learner_reports_time_flops_and_task_parameters(costs):
    for _, cost in costs.values():
        assert cost.seconds > 0 and cost.flops > 0 and cost.macs == cost.flops // 2
        assert cost.support_size == 12
        assert set(cost.as_dict()) == {
            "seconds",
            "flops",
            "macs",
            "task_parameters",
            "support_size",
        }


def test_task_parameters_count_what_each_learner_adapts(costs):
    learner, cost = costs["protonets"]
    dim, way = learner.backbone.feature_dim, 3
    assert cost.task_parameters == way * dim  # prototypes
    film = 2 * sum(layer.channels for layer in learner.backbone.film_layers)
    assert costs["cnaps"][1].task_parameters == film + way * dim + way
    assert costs["simple_cnaps"][1].task_parameters == film + way * dim + way * dim * dim
    assert costs["finetuner"][1].task_parameters == way * dim + way


def test_fine_tuning_costs_more_compute_than_one_forward_pass(costs):
    protonets_flops = costs["protonets"][1].flops
    assert costs["finetuner"][1].flops > protonets_flops  # forward pass plus training steps
    assert costs["cnaps"][1].flops > protonets_flops  # plus set encoder and generators
