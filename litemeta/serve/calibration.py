""""None of these" and meaningful probabilities, calibrated from the taught examples alone.

Each taught example is scored by a classifier adapted to the other examples (leave-one-out,
:mod:`litemeta.serve.quality`). From those held-out logits:

- the **temperature** ``T`` of the probabilities ``softmax(logits / T)`` minimises the
  held-out negative log-likelihood (temperature scaling, Guo et al., "On Calibration of
  Modern Neural Networks", ICML 2017, fitted here on leave-one-out logits instead of a
  validation set);
- the **familiarity** of an image is where its open-set score, the largest logit (for
  ProtoNets and Simple CNAPs the negative distance to the nearest class; Hendrycks et al.,
  "Scaling Out-of-Distribution Detection for Real-World Settings", ICML 2022, for the max
  logit), falls among the held-out scores of the taught examples: the interpolated
  empirical distribution function with Weibull plotting positions ``i / (m + 1)``, in
  ``[0, 1]``. An image is "none of these" when its familiarity is below the threshold,
  :data:`DEFAULT_THRESHOLD` unless the user sets one: rejecting below level ``a`` is
  rejecting below the ``a``-quantile of the held-out known scores (a split-conformal test,
  Vovk et al., "Algorithmic Learning in a Random World", 2005).

Only torch operations that export to ONNX are used on the query path (:func:`familiarity`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_THRESHOLD",
    "OpenSet",
    "calibrate",
    "familiarity",
    "fit_temperature",
    "open_set_scores",
]

#: Familiarity below which an image is "none of these": about the share of new photos of
#: the taught classes that are rejected (docs/benchmarks.md, `litemeta bench openset`).
DEFAULT_THRESHOLD = 0.05
#: The temperatures searched (relative to the learner's own logit scale).
TEMPERATURE_RANGE = (0.05, 20.0)
_GOLDEN = (math.sqrt(5) - 1) / 2
_SEARCH_STEPS = 60


def _check_logits(logits: Tensor, labels: Tensor) -> None:
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"need logits [n, way] and labels [n], got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )


def _nll(logits: Tensor, labels: Tensor, temperature: float) -> float:
    log_probabilities = (logits / temperature).log_softmax(-1)
    return float(-log_probabilities.gather(1, labels[:, None]).mean())


def fit_temperature(logits: Tensor, labels: Tensor) -> float:
    """The ``T`` in :data:`TEMPERATURE_RANGE` minimising the mean NLL of
    ``softmax(logits / T)`` at ``labels``; 1 without rows.

    The NLL is convex in ``1 / T`` (a log-sum-exp of linear functions minus a linear one),
    so it has one minimum along ``log T`` and a golden-section search finds it.
    """
    _check_logits(logits, labels)
    if logits.shape[0] == 0:
        return 1.0
    logits, labels = logits.double(), labels.long()
    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    for _ in range(_SEARCH_STEPS):
        left = high - _GOLDEN * (high - low)
        right = low + _GOLDEN * (high - low)
        if _nll(logits, labels, math.exp(left)) <= _nll(logits, labels, math.exp(right)):
            high = right
        else:
            low = left
    return math.exp((low + high) / 2)


def open_set_scores(logits: Tensor) -> Tensor:
    """The open-set score of each row of logits ``[n, way]``: its largest logit ``[n]``."""
    return logits.max(dim=-1).values


def familiarity(scores: Tensor, knots: Tensor) -> Tensor:
    """Where ``scores`` fall among the sorted held-out known scores ``knots`` ``[m]``:
    0 below the lowest, ``(i + 1) / (m + 1)`` at the i-th (0-based), linear between them,
    1 above the highest; all ones without knots (nothing to compare with)."""
    m = knots.shape[0]
    if m == 0:
        return torch.ones_like(scores)
    scores = scores.unsqueeze(-1)
    below = (scores >= knots[:1]).to(scores.dtype)
    above = (scores > knots[-1:]).to(scores.dtype)
    total = below + above
    if m > 1:
        widths = (knots[1:] - knots[:-1]).clamp_min(torch.finfo(knots.dtype).tiny)
        steps = ((scores - knots[:-1]) / widths).clamp(0, 1)
        total = total + steps.sum(-1, keepdim=True)
    return (total / (m + 1)).squeeze(-1)


@dataclass(frozen=True)
class OpenSet:
    """A recogniser's calibration: the temperature of its probabilities, the sorted
    held-out scores of its taught examples, and the familiarity threshold."""

    temperature: float
    knots: list[float]
    threshold: float = DEFAULT_THRESHOLD

    def summary(self) -> dict[str, float]:
        """The JSON the API returns (``open_set``)."""
        return {"threshold": self.threshold, "temperature": self.temperature}


def calibrate(held_out_logits: Tensor, labels: Tensor) -> OpenSet:
    """The calibration from each taught example's logits ``[n, way]`` under a classifier
    adapted without it, and its class ``[n]``."""
    _check_logits(held_out_logits, labels)
    knots = sorted(open_set_scores(held_out_logits.double()).tolist())
    return OpenSet(fit_temperature(held_out_logits, labels), knots)
