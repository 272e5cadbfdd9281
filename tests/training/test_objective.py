"""The training objectives (``training.lite.objective``) against the formula each one stands
for, written out by hand with plain autograd on a tiny float64 CNAPs-like model.

The reference formulas follow the code: cambridge-mlg/LITE ``src/run.py`` (``train_lite``,
``_get_number_of_batches``) and ``src/model.py`` (``build_task_representation_with_split_batch``);
microsoft/ORBIT-Dataset ``single-step-learner.py`` (``train_task_with_lite``) and
``model/few_shot_recognisers.py`` (``personalise_with_lite``). Both build the support set as
``[rows with gradient; cached rows without]`` in the order of a random permutation, with the
labels permuted alike, and draw that permutation again for every query batch.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn
from train_helpers import SyntheticTasks, TinyProtoNet

from litemeta.config import ConfigError
from litemeta.experiment.settings import load_experiment
from litemeta.learners.base import FewShotLearner, TaskClassifier
from litemeta.lite import LitePass, LiteSettings
from litemeta.tasks import Task
from litemeta.training import TrainingConfig, backward_task, train

N_SUPPORT, WAY, N_QUERY, DIM, WIDTH, CODE = 8, 2, 9, 5, 4, 3
TASKS_PER_STEP = 3
REGULARIZATION = 1e-2


class _Classifier(TaskClassifier):
    def __init__(self, learner: TinyFilmLearner, film: tuple[Tensor, Tensor], prototypes: Tensor):
        super().__init__()
        self.learner, self.film, self.prototypes = learner, film, prototypes
        self.regularizer = REGULARIZATION * learner.film.weight.square().sum()

    def embed(self, images: Tensor) -> Tensor:
        return self.learner.embed(images, *self.film)

    def logits(self, features: Tensor) -> Tensor:
        return -(features[:, None] - self.prototypes[None]).square().sum(-1)


class TinyFilmLearner(FewShotLearner):
    """A set encoder pooled into FiLM for a linear backbone, then prototypes: the two nested
    set functions of CNAPs. It records which support rows each map back-propagates."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(DIM, CODE).double()
        self.film = nn.Linear(CODE, 2 * WIDTH).double()
        self.backbone = nn.Linear(DIM, WIDTH).double()
        self.recorded: list[tuple[str, list[int]]] = []
        self.first_passes = 0  # calls over the whole support set without gradient
        self.support: Tensor | None = None

    def encode(self, images: Tensor) -> Tensor:
        return torch.tanh(self.encoder(images.flatten(1)))

    def film_of(self, encodings: Tensor) -> tuple[Tensor, Tensor]:
        gamma, beta = self.film(encodings.mean(0)).chunk(2)
        return 1 + gamma, beta

    def embed(self, images: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        return torch.tanh(gamma * self.backbone(images.flatten(1)) + beta)

    def _record(self, what: str, rows: Tensor) -> None:
        if torch.is_grad_enabled():  # LITE's recomputation of the drawn rows
            same = (rows.flatten(1)[:, None] == self.support.flatten(1)[None]).all(-1)  # type: ignore[union-attr]
            self.recorded.append((what, sorted(same.double().argmax(1).tolist())))
        else:
            self.first_passes += 1

    def adapt(self, support_images, support_labels, *, lite=None, support_clips=None):
        assert support_clips is None
        self.support = support_images

        def encode_rows(rows: Tensor) -> Tensor:
            self._record("encoder", rows)
            return self.encode(rows)

        gamma, beta = self.film_of(lite.map(encode_rows, support_images, support_labels))

        def embed_rows(rows: Tensor) -> Tensor:
            self._record("backbone", rows)
            return self.embed(rows, gamma, beta)

        features = lite.map(embed_rows, support_images, support_labels)
        return _Classifier(self, (gamma, beta), _class_means(features, support_labels))


def _class_means(features: Tensor, labels: Tensor) -> Tensor:
    return torch.stack([features[labels == c].mean(0) for c in range(WAY)])


def _task(seed: int = 1) -> Task:
    generator = torch.Generator().manual_seed(seed)
    # Images of 1 x 1 x DIM pixels, which the tiny networks flatten.
    support = torch.randn(N_SUPPORT, 1, 1, DIM, generator=generator, dtype=torch.float64)
    query = torch.randn(N_QUERY, 1, 1, DIM, generator=generator, dtype=torch.float64)
    support_labels = torch.arange(WAY).repeat(N_SUPPORT // WAY)
    query_labels = torch.arange(N_QUERY) % WAY
    return Task(support, support_labels, query, query_labels, ["a", "b"])


def _trainer_gradient(learner, task, batch_size=4, **lite) -> Tensor:
    learner.zero_grad()
    learner.recorded.clear()
    learner.first_passes = 0
    generator = torch.Generator().manual_seed(lite.pop("seed", 5))
    settings = LiteSettings(**lite)
    backward_task(
        learner,
        task,
        lite=settings,
        generator=generator,
        query_batch_size=batch_size,
        tasks_per_step=TASKS_PER_STEP,
    )
    return torch.cat([p.grad.flatten() for p in learner.parameters()])


def _subsets(learner) -> list[tuple[list[int], list[int]]]:
    """(encoder rows, backbone rows) of each adaptation, from the recording (LITE recomputes
    the backbone's rows first, then the encoder's)."""
    calls = learner.recorded
    assert [what for what, _ in calls] == ["backbone", "encoder"] * (len(calls) // 2)
    return [(calls[i + 1][1], calls[i][1]) for i in range(0, len(calls), 2)]


def _reference_batch_loss(learner, task, rows: list[int], start: int, end: int, scale: float):
    """One query batch of the reference code: permutation = [rows; the rest], the rows with
    gradient, the rest cached without, labels permuted alike; no N/h scale on the rows."""
    rest = [n for n in range(N_SUPPORT) if n not in rows]
    order = torch.tensor(rows + rest)
    images, labels, h = task.support_images[order], task.support_labels[order], len(rows)
    encodings = torch.cat([learner.encode(images[:h]), learner.encode(images[h:]).detach()])
    gamma, beta = learner.film_of(encodings)
    features = torch.cat(
        [learner.embed(images[:h], gamma, beta), learner.embed(images[h:], gamma, beta).detach()]
    )
    prototypes = _class_means(features, labels)
    queries = learner.embed(task.query_images[start:end], gamma, beta)
    logits = -(queries[:, None] - prototypes[None]).square().sum(-1)
    cross_entropy = F.cross_entropy(logits, task.query_labels[start:end])  # batch mean
    regularizer = REGULARIZATION * learner.film.weight.square().sum()
    return scale * cross_entropy + regularizer


def _gradient_of(learner, losses: list[Tensor]) -> Tensor:
    parameters = list(learner.parameters())
    total = [torch.zeros_like(p) for p in parameters]
    for loss in losses:
        for summed, grad in zip(
            total,
            torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True),
            strict=True,
        ):
            if grad is not None:
                summed += grad
    return torch.cat([summed.flatten() for summed in total])


def test_lite_reference_is_the_lite_codes_loss_with_a_fresh_shared_subset_per_batch():
    learner, task, h = TinyFilmLearner(), _task(), 3
    got = _trainer_gradient(learner, task, h=h, objective="lite_reference")
    subsets = _subsets(learner)
    # 9 queries in batches of 4: the LITE code's last batch of one joins the one before.
    bounds = [(0, 4), (4, 9)]
    assert len(subsets) == len(bounds)
    for encoder_rows, backbone_rows in subsets:
        assert encoder_rows == backbone_rows and len(encoder_rows) == h  # one shared subset
    assert subsets[0][0] != subsets[1][0]  # drawn again for the next query batch
    assert learner.first_passes == 2  # as the LITE code caches them: once per map and task
    expected = _gradient_of(
        learner,
        [
            _reference_batch_loss(learner, task, rows, start, end, 1 / TASKS_PER_STEP)
            for (rows, _), (start, end) in zip(subsets, bounds, strict=True)
        ],
    )
    assert expected.abs().min() > 0
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_orbit_reference_scales_each_batch_loss_by_n_over_h_tasks():
    learner, task, h = TinyFilmLearner(), _task(), 3
    got = _trainer_gradient(learner, task, h=h, objective="orbit_reference")
    subsets = _subsets(learner)
    bounds = [(0, 4), (4, 8), (8, 9)]  # ORBIT's batches: a last batch of one stays alone
    assert len(subsets) == len(bounds)
    assert all(encoder == backbone for encoder, backbone in subsets)
    scale = N_SUPPORT / (h * TASKS_PER_STEP)
    expected = _gradient_of(
        learner,
        [
            _reference_batch_loss(learner, task, rows, start, end, scale)
            for (rows, _), (start, end) in zip(subsets, bounds, strict=True)
        ],
    )
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def _spliced(values: Tensor, rows: list[int], scale: float) -> Tensor:
    """Forward: ``values``; gradient: ``scale`` times that of the given rows, none elsewhere."""
    mask = torch.zeros(len(values), 1, dtype=values.dtype)
    mask[rows] = scale
    return values.detach() + mask * (values - values.detach())


def test_unbiased_is_the_exact_forward_with_independent_n_over_h_scaled_rows():
    learner, task, h = TinyFilmLearner(), _task(), 3
    got = _trainer_gradient(learner, task, h=h)
    ((encoder_rows, backbone_rows),) = _subsets(learner)  # one adaptation per task
    assert len(encoder_rows) == len(backbone_rows) == h
    scale = N_SUPPORT / h
    support = task.support_images
    gamma, beta = learner.film_of(_spliced(learner.encode(support), encoder_rows, scale))
    features = _spliced(learner.embed(support, gamma, beta), backbone_rows, scale)
    prototypes = _class_means(features, task.support_labels)
    queries = learner.embed(task.query_images, gamma, beta)
    logits = -(queries[:, None] - prototypes[None]).square().sum(-1)
    regularizer = REGULARIZATION * learner.film.weight.square().sum()
    loss = (F.cross_entropy(logits, task.query_labels) + regularizer) / TASKS_PER_STEP
    torch.testing.assert_close(got, _gradient_of(learner, [loss]), rtol=1e-10, atol=1e-12)


def _full_gradient(learner, task, bounds, batch_scale, regularizer_per_batch) -> Tensor:
    """Plain autograd through every support image."""
    gamma, beta = learner.film_of(learner.encode(task.support_images))
    prototypes = _class_means(learner.embed(task.support_images, gamma, beta), task.support_labels)
    regularizer = REGULARIZATION * learner.film.weight.square().sum()
    losses = []
    for start, end in bounds:
        queries = learner.embed(task.query_images[start:end], gamma, beta)
        logits = -(queries[:, None] - prototypes[None]).square().sum(-1)
        losses.append(
            batch_scale(end - start) * F.cross_entropy(logits, task.query_labels[start:end])
        )
    if regularizer_per_batch:
        losses += [regularizer] * len(bounds)
    else:
        losses.append(regularizer / TASKS_PER_STEP)
    return _gradient_of(learner, losses)


@pytest.mark.parametrize("h", [N_SUPPORT, None])
def test_every_objective_is_plain_back_propagation_when_h_covers_the_support_set(h):
    learner, task = TinyFilmLearner(), _task()
    unbiased = _full_gradient(
        learner, task, [(0, N_QUERY)], lambda b: 1 / TASKS_PER_STEP, regularizer_per_batch=False
    )
    torch.testing.assert_close(_trainer_gradient(learner, task, h=h), unbiased)
    lite = _full_gradient(
        learner, task, [(0, 4), (4, 9)], lambda b: 1 / TASKS_PER_STEP, regularizer_per_batch=True
    )
    got = _trainer_gradient(learner, task, h=h, objective="lite_reference")
    torch.testing.assert_close(got, lite)
    # ORBIT scales by N / (h * tasks) with its configured h: 1 / tasks at h = N.
    orbit = _full_gradient(
        learner,
        task,
        [(0, 4), (4, 8), (8, 9)],
        lambda b: 1 / TASKS_PER_STEP,
        regularizer_per_batch=True,
    )
    torch.testing.assert_close(
        _trainer_gradient(learner, task, h=h, objective="orbit_reference"), orbit
    )


def _within_four_sigma(draws: Tensor, exact: Tensor) -> Tensor:
    standard_error = draws.std(0) / draws.shape[0] ** 0.5
    return (draws.mean(0) - exact).abs() <= 4 * standard_error + 1e-9 * exact.abs().max()


def test_unbiased_stays_unbiased_with_a_redraw_per_query_batch_and_the_references_do_not():
    learner, task, h = TinyFilmLearner(), _task(), 2
    settings = {"objective": "unbiased", "redraw_per_query_batch": True}
    exact = _trainer_gradient(learner, task, h=None, **settings)
    draws = torch.stack(
        [_trainer_gradient(learner, task, h=h, seed=seed, **settings) for seed in range(300)]
    )
    assert len(_subsets(learner)) == 3  # three query batches, three adaptations
    assert draws.std(0).gt(0).sum() > 0.9 * exact.numel()
    inside = _within_four_sigma(draws, exact)
    assert inside.all(), f"{(~inside).sum().item()} of {exact.numel()} coordinates biased"
    for objective in ("lite_reference", "orbit_reference"):
        exact = _trainer_gradient(learner, task, h=None, objective=objective)
        draws = torch.stack(
            [
                _trainer_gradient(learner, task, h=h, seed=seed, objective=objective)
                for seed in range(300)
            ]
        )
        assert (~_within_four_sigma(draws, exact)).sum() > 0.5 * exact.numel(), objective


def test_a_flag_overrides_the_objective_it_does_not_contradict():
    learner, task = TinyFilmLearner(), _task()
    _trainer_gradient(learner, task, h=3, objective="lite_reference", redraw_per_query_batch=False)
    ((encoder_rows, backbone_rows),) = _subsets(learner)  # one adaptation, one shared subset
    assert encoder_rows == backbone_rows
    _trainer_gradient(learner, task, h=3, objective="orbit_reference", shared_subset=False)
    assert len(_subsets(learner)) == 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lite.objective=lite_code", r"one of \['unbiased', 'lite_reference', 'orbit_reference'\]"),
        ("lite.shared_subset=true", "shared_subset=true makes the gradient .* biased"),
        ("lite.unbiased_scaling=false", "drops the N/h scale, which biases"),
    ],
)
def test_refuses_an_unknown_objective_and_flags_that_contradict_unbiased(override, message):
    with pytest.raises(ConfigError, match=message):
        TrainingConfig().apply_overrides([override])


@pytest.mark.parametrize("objective", ["lite_reference", "orbit_reference"])
@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("lite.unbiased_scaling=true", "reference code of lite.objective '.*' does not do"),
        ("lite.stratified=true", "draws uniformly without a scale"),
    ],
)
def test_refuses_the_unbiased_estimators_flags_with_a_reference_objective(objective, flag, message):
    with pytest.raises(ConfigError, match=message):
        TrainingConfig().apply_overrides([f"lite.objective={objective}", flag])


def test_a_shared_subset_needs_a_generator():
    learner, task = TinyFilmLearner(), _task()
    with pytest.raises(ValueError, match=r"give the LitePass a generator"):
        learner.adapt(
            task.support_images,
            task.support_labels,
            lite=LitePass(LiteSettings(h=3, shared_subset=True)),
        )


def test_the_objective_is_saved_with_the_experiment(tmp_path):
    overrides = ["training.lite.objective=orbit_reference", "training.lite.shared_subset=false"]
    config = load_experiment("default", overrides)
    saved = tmp_path / "experiment.yaml"  # as train_experiment writes it
    saved.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    lite = yaml.safe_load(saved.read_text())["training"]["lite"]
    assert (lite["objective"], lite["shared_subset"], lite["redraw_per_query_batch"]) == (
        "orbit_reference",
        False,
        None,
    )
    assert load_experiment(saved).training.lite == config.training.lite
    with pytest.raises(ConfigError, match=r"lite\.objective must be one of"):
        load_experiment(saved, ["training.lite.objective=orbit"])


@pytest.mark.parametrize("objective", ["lite_reference", "orbit_reference"])
def test_a_run_trains_with_a_reference_objective_and_saves_it(tmp_path, objective):
    config = TrainingConfig.from_dict(
        {
            "steps": 2,
            "tasks_per_step": 2,
            "query_batch_size": 4,
            "validate_every": 0,
            "output_dir": str(tmp_path / "run"),
            "lite": {"h": 5, "objective": objective},
        }
    )
    torch.manual_seed(0)
    result = train(config, TinyProtoNet(), SyntheticTasks(), progress=False, workers=0)
    assert all(math.isfinite(step.loss) for step in result.history)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["lite"]
    assert saved["objective"] == objective
    assert TrainingConfig.from_yaml(tmp_path / "run" / "config.yaml") == config
