"""The test-time cost of personalisation: time, FLOPs/MACs and per-task parameters.

The LITE paper (Bronskill et al., NeurIPS 2021) compares learners by the compute needed to
adapt to a new task ("MACs to personalise", time, parameters learned per task) as well as
by accuracy; this module measures those numbers for one support set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from litemeta.device import Stopwatch

__all__ = ["AdaptationCost", "measure_adaptation_cost"]


class _Adapted(Protocol):
    """What adapting returns (a :class:`~litemeta.learners.base.TaskClassifier`), as far as
    the cost report needs it."""

    def task_parameters(self) -> dict[str, Tensor]: ...


@dataclass(frozen=True)
class AdaptationCost:
    """What adapting to one support set costs.

    Attributes:
        seconds: wall-clock time of one adaptation (after a first, counted run).
        flops: floating-point operations of one adaptation, as counted by
            :class:`torch.utils.flop_counter.FlopCounterMode` (matrix products and
            convolutions, forward and any backward); one multiply-accumulate = 2 FLOPs.
        task_parameters: how many numbers the adapted classifier holds that are specific to
            the task (generated in one pass or learned by gradient steps), e.g. prototypes,
            generated FiLM parameters and classifier weights, or a fine-tuned head.
        support_size: the number of support images adapted to.
    """

    seconds: float
    flops: int
    task_parameters: int
    support_size: int

    @property
    def macs(self) -> int:
        """Multiply-accumulate operations (``flops / 2``)."""
        return self.flops // 2

    def as_dict(self) -> dict[str, float | int]:
        """JSON-able summary, MACs included."""
        return {**asdict(self), "macs": self.macs}


def measure_adaptation_cost(adapt: Callable[[], _Adapted], support_size: int) -> AdaptationCost:
    """Run ``adapt`` twice without autograd (learners that train enable it inside): once under
    a FLOP counter, which also warms up, then timed."""
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            adapt()
        clock = Stopwatch()  # the current CUDA device, if any
        classifier = adapt()
        seconds = clock.elapsed()
    parameters = sum(tensor.numel() for tensor in classifier.task_parameters().values())
    return AdaptationCost(seconds, counter.get_total_flops(), parameters, support_size)
