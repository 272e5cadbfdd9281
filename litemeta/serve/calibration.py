"""Calibrated probabilities and "none of these", from the taught examples alone.

Each taught example is scored by a classifier adapted to the other examples (leave-one-out,
:mod:`litemeta.serve.quality`). From those held-out logits:

- the **temperature** ``T`` of the probabilities ``softmax(logits / T)`` minimises the
  held-out negative log-likelihood (temperature scaling, Guo et al., "On Calibration of
  Modern Neural Networks", ICML 2017, fitted here on leave-one-out logits instead of a
  validation set);
- the **familiarity** of an image is where its open-set score falls among the held-out
  scores of the taught examples (each against the class means without it): the
  interpolated empirical distribution function with Weibull plotting positions
  ``i / (m + 1)``, reaching 0 and 1 one mean gap below the lowest and above the highest,
  in ``[0, 1]``. The open-set score is the cosine similarity of the image's features to the
  nearest class mean of the taught examples' features, both less a background: the mean
  of features of other images and their top within-class directions, discounted
  (:mod:`litemeta.serve.background`). An image is "none of these" when its familiarity is
  below the threshold, :data:`DEFAULT_THRESHOLD` unless the user sets one: rejecting below
  level ``a`` is rejecting below the ``a``-quantile of the held-out known scores (a
  split-conformal test, Vovk et al., "Algorithmic Learning in a Random World", 2005). The
  cosine less the background ranks untaught classes better than the plain cosine and the
  learner's largest logit (AUROC 0.922, 0.856 and 0.761 on 40 tasks of the emoji
  validation split with the pretrained backbone; docs/benchmarks.md).

Only torch operations that export to ONNX are used on the query path (:func:`familiarity`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_THRESHOLD",
    "Background",
    "OpenSet",
    "calibrate",
    "familiarity",
    "fit_temperature",
    "open_set_scores",
]

#: Familiarity below which an image is "none of these": chosen on the emoji validation split
#: (pretrained backbone, the score less the background) as the largest of 0.01, 0.02, 0.03,
#: 0.04, 0.05, 0.1, ... that cost the taught classes at most 3 points of accuracy: 0.04 cost
#: 2.6 and rejected 54 % of untaught images, 0.05 cost 3.4 (`litemeta bench openset --split
#: validation`, docs/benchmarks.md).
DEFAULT_THRESHOLD = 0.04
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


@dataclass(frozen=True)
class Background:
    """What features of images in general share, from :mod:`litemeta.serve.background`:
    their mean ``[d]``, directions ``[k, d]`` (orthonormal rows) to discount, and the share
    ``[k]`` of each direction's part that is kept (``None``: none, the parts are removed)."""

    mean: Tensor
    directions: Tensor
    kept: Tensor | None = None

    def remove(self, features: Tensor) -> Tensor:
        """Features ``[n, d]`` less the mean, their parts along the directions scaled by
        the shares kept."""
        mean, directions = self.mean.to(features), self.directions.to(features)
        centred = features - mean
        parts = centred @ directions.T
        if self.kept is not None:
            parts = parts * (1 - self.kept.to(features))
        return centred - parts @ directions


def open_set_scores(features: Tensor, centres: Tensor, background: Background) -> Tensor:
    """The open-set score of features ``[n, d]``: the cosine similarity to the nearest of
    the class means ``centres`` ``[way, d]``, both with the ``background`` removed, ``[n]``."""
    unit = F.normalize(background.remove(features), dim=-1)
    similarity = unit @ F.normalize(background.remove(centres.to(features)), dim=-1).T
    return similarity.max(dim=-1).values


def familiarity(scores: Tensor, knots: Tensor) -> Tensor:
    """Where ``scores`` fall among the sorted held-out known scores ``knots`` ``[m]``:
    ``(i + 1) / (m + 1)`` at the i-th (0-based), linear between them and down to 0 one mean
    gap below the lowest and up to 1 one mean gap above the highest (steps where the
    gap is 0); all ones without knots (nothing to compare with)."""
    m = knots.shape[0]
    if m == 0:
        return torch.ones_like(scores)
    gap = (knots[-1:] - knots[:1]) / max(m - 1, 1)
    edges = torch.cat([knots[:1] - gap, knots, knots[-1:] + gap])
    widths = (edges[1:] - edges[:-1]).clamp_min(torch.finfo(knots.dtype).tiny)
    steps = ((scores.unsqueeze(-1) - edges[:-1]) / widths).clamp(0, 1)
    return steps.sum(-1) / (m + 1)


@dataclass(frozen=True)
class OpenSet:
    """A recogniser's calibration: the temperature of its probabilities, the class means
    of its taught examples' features ``[way, d]``, the background removed before the
    cosine, the sorted held-out scores of the examples, and the familiarity threshold."""

    temperature: float
    centres: Tensor
    background: Background
    knots: list[float]
    threshold: float = DEFAULT_THRESHOLD

    def scores(self, features: Tensor) -> Tensor:
        """The open-set scores of features ``[n, d]`` (:func:`open_set_scores`), ``[n]``."""
        return open_set_scores(features, self.centres, self.background)

    def familiarity(self, features: Tensor) -> Tensor:
        """The familiarity of features ``[n, d]``, ``[n]``."""
        knots = torch.tensor(self.knots, dtype=features.dtype, device=features.device)
        return familiarity(self.scores(features), knots)

    def summary(self) -> dict[str, float]:
        """The JSON the API returns (``open_set``)."""
        return {"threshold": self.threshold, "temperature": self.temperature}


def calibrate(
    held_out_logits: Tensor,
    held_out_scores: Tensor,
    labels: Tensor,
    centres: Tensor,
    background: Background,
) -> OpenSet:
    """The calibration from each taught example's logits ``[n, way]`` and open-set score
    ``[n]`` against a classifier and class means adapted without it, its class ``[n]``,
    the class means of all examples ``centres`` and the ``background`` of the scores."""
    _check_logits(held_out_logits, labels)
    knots = sorted(held_out_scores.double().tolist())
    return OpenSet(fit_temperature(held_out_logits, labels), centres, background, knots)
