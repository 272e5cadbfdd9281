"""The calibration math against numpy references: the temperature by brute-force search,
familiarity by ``np.interp``, the open-set score by plain cosines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from litemeta.serve.calibration import (
    DEFAULT_THRESHOLD,
    TEMPERATURE_RANGE,
    Background,
    OpenSet,
    calibrate,
    familiarity,
    fit_temperature,
    open_set_scores,
)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    log_probabilities = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
    return float(-log_probabilities[np.arange(len(labels)), labels].mean())


def _noisy_logits(seed: int, n: int = 40, way: int = 4, scale: float = 5.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, way, n)
    logits = rng.normal(size=(n, way)) * scale
    logits[np.arange(n), labels] += scale  # mostly right, sometimes confidently wrong
    return logits, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_temperature_minimises_the_held_out_nll(seed):
    logits, labels = _noisy_logits(seed)
    fitted = fit_temperature(torch.from_numpy(logits), torch.from_numpy(labels))
    grid = np.exp(np.linspace(np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1]), 4001))
    losses = [_nll(logits, labels, t) for t in grid]
    best = grid[int(np.argmin(losses))]
    assert fitted == pytest.approx(best, rel=0.01)
    assert _nll(logits, labels, fitted) <= min(losses) + 1e-9
    assert fitted > 1.5, "overconfident logits need softening"


def test_the_temperature_stays_in_range_and_is_one_without_examples():
    separable = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
    assert fit_temperature(separable, torch.tensor([0, 1])) == pytest.approx(
        TEMPERATURE_RANGE[0], rel=1e-3
    )
    assert fit_temperature(separable, torch.tensor([1, 0])) == pytest.approx(
        TEMPERATURE_RANGE[1], rel=1e-3
    )
    assert fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)) == 1.0
    with pytest.raises(ValueError, match=r"need logits \[n, way\] and labels \[n\]"):
        fit_temperature(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))


def test_familiarity_interpolates_weibull_positions_between_the_held_out_scores():
    knots = np.array([-1.0, 0.5, 0.75, 3.0])
    gap = (3.0 - -1.0) / 3
    scores = np.array([-9.0, -2.5, -1.5, -1.0, 0.0, 0.6, 2.0, 3.0, 3.5, 4.0, 9.0])
    expected = np.interp(
        scores, [-1 - gap, *knots, 3 + gap], [0, 0.2, 0.4, 0.6, 0.8, 1.0], left=0, right=1
    )
    got = familiarity(torch.from_numpy(scores), torch.from_numpy(knots))
    assert got.numpy() == pytest.approx(expected, abs=1e-12)
    assert got[0] == 0 and got[-1] == 1 and got[3] == pytest.approx(0.2)


def test_familiarity_of_one_score_or_equal_scores_is_a_step_and_none_means_familiar():
    one = familiarity(torch.tensor([0.1, 0.3, 0.5]), torch.tensor([0.3]))
    assert one.tolist() == [0.0, 0.0, 1.0]  # a step up just above the one score
    ties = familiarity(torch.tensor([0.1, 0.3, 0.5]), torch.tensor([0.3, 0.3, 0.3]))
    assert ties.tolist() == [0.0, 0.0, 1.0]
    assert familiarity(torch.tensor([-5.0, 5.0]), torch.zeros(0)).tolist() == [1.0, 1.0]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _residual(x: np.ndarray, mean: np.ndarray, spanning: np.ndarray) -> np.ndarray:
    """``x - mean`` less its least-squares fit by the columns of ``spanning``."""
    centred = x - mean
    coefficients = np.linalg.lstsq(spanning, centred, rcond=None)[0]
    return centred - spanning @ coefficients


def test_the_open_set_score_is_the_largest_cosine_to_a_class_mean_less_the_background():
    rng = np.random.default_rng(3)
    features, centres = rng.normal(size=(6, 5)), rng.normal(size=(3, 5))
    mean, spanning = rng.normal(size=5) * 3, rng.normal(size=(5, 2))
    directions = np.linalg.qr(spanning)[0].T  # orthonormal rows spanning the same plane
    expected = [
        max(_cosine(_residual(f, mean, spanning), _residual(c, mean, spanning)) for c in centres)
        for f in features
    ]
    centred = [max(_cosine(f - mean, c - mean) for c in centres) for f in features]
    plain = [max(_cosine(f, c) for c in centres) for f in features]
    features_t, centres_t = torch.from_numpy(features), torch.from_numpy(centres)
    mean_t, directions_t = torch.from_numpy(mean), torch.from_numpy(directions)
    got = open_set_scores(features_t, centres_t, Background(mean_t, directions_t))
    assert got.numpy() == pytest.approx(expected, abs=1e-12)
    only_mean = Background(mean_t, directions_t[:0])
    assert open_set_scores(features_t, centres_t, only_mean).numpy() == pytest.approx(centred)
    nothing = Background(0 * mean_t, directions_t[:0])
    assert open_set_scores(features_t, centres_t, nothing).numpy() == pytest.approx(plain)
    assert (
        min(np.abs(np.subtract(expected, centred)).max(), np.abs(np.subtract(centred, plain)).max())
        > 0.05
    )


def test_the_background_keeps_the_given_share_of_each_direction():
    rng = np.random.default_rng(5)
    features, mean = rng.normal(size=(4, 6)), rng.normal(size=6)
    directions = np.linalg.qr(rng.normal(size=(6, 2)))[0].T
    kept = np.array([0.3, 0.0])
    # By hand: split each centred feature into its parts along the directions and the rest.
    centred = features - mean
    rest = centred - (centred @ directions.T) @ directions
    expected = rest + 0.3 * np.outer(centred @ directions[0], directions[0])
    background = Background(*(torch.from_numpy(a) for a in (mean, directions, kept)))
    assert background.remove(torch.from_numpy(features)).numpy() == pytest.approx(expected)
    removed = Background(torch.from_numpy(mean), torch.from_numpy(directions))
    assert removed.remove(torch.from_numpy(features)).numpy() == pytest.approx(rest)


def test_calibrate_sorts_the_held_out_scores_and_fits_the_temperature():
    logits, labels = _noisy_logits(4, n=6, way=3)
    scores = torch.tensor([0.3, 0.9, 0.1, 0.5, 0.7, 0.2])
    centres = torch.eye(3, 5, dtype=torch.float64)
    none = Background(torch.zeros(5, dtype=torch.float64), torch.zeros(0, 5, dtype=torch.float64))
    open_set = calibrate(torch.from_numpy(logits), scores, torch.from_numpy(labels), centres, none)
    assert open_set.knots == pytest.approx([0.1, 0.2, 0.3, 0.5, 0.7, 0.9])
    assert open_set.temperature == fit_temperature(
        torch.from_numpy(logits), torch.from_numpy(labels)
    )
    assert open_set.threshold == DEFAULT_THRESHOLD
    assert open_set.summary() == {
        "threshold": DEFAULT_THRESHOLD,
        "temperature": open_set.temperature,
    }
    # The familiarity of features: their score less the background (1 at a class mean's
    # direction, 0 at right angles to all of them) placed among the knots; the background's
    # mean and direction (the last axis) take away what would otherwise count.
    origin = torch.tensor([0.0, 0, 0, 0, 7], dtype=torch.float64)
    background = Background(origin, torch.tensor([[0.0, 0, 0, 0, 1]], dtype=torch.float64))
    features = torch.cat([centres[:1] * 2, -centres[1:2], centres[:1] + centres[1:2]])
    features[:, 4] = torch.tensor([5.0, -3, 20])
    got = OpenSet(1.0, centres + origin, background, [0.6, 0.8]).familiarity(features)
    assert got.tolist() == pytest.approx([1.0, 0.0, (1 + (np.sqrt(0.5) - 0.6) / 0.2) / 3])
