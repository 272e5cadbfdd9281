"""LITE's training objectives: the exact estimator, and what the reference code back-propagates.

``training.lite.objective`` names one; its flags (``unbiased_scaling``, ``shared_subset``,
``redraw_per_query_batch``, in the ``lite`` section) may be set to override it, within the
combinations that keep the name meaningful.

* ``unbiased`` (default): the exact LITE estimator (Bronskill et al., NeurIPS 2021,
  :mod:`litemeta.lite`): forward values of the whole support set, the gradient of the drawn
  rows scaled by N/h, independent subsets for nested set functions, one draw per task, and
  the task's loss ``(mean cross-entropy over its queries + regulariser) / tasks_per_step``.
* ``lite_reference``: cambridge-mlg/LITE ``src/run.py`` (``train_lite``) and ``model.py``
  (``build_task_representation_with_split_batch``): per query batch, a fresh subset of h
  support images shared by the set encoder and the backbone, no N/h scale, and the loss
  ``mean cross-entropy of the batch / tasks_per_step + regulariser``; a last query batch of
  one image joins the batch before it (``_get_number_of_batches``).
* ``orbit_reference``: microsoft/ORBIT-Dataset ``single-step-learner.py``
  (``train_task_with_lite``) and ``few_shot_recognisers.py`` (``personalise_with_lite``), the
  same at the LITE-era commit dc25dae and at HEAD: per query batch, a fresh subset shared by
  the set encoder and the backbone, no N/h scale on the rows, and the loss
  ``N / (h * tasks_per_step) * mean cross-entropy of the batch + regulariser``.

Both reference objectives are biased estimates of their own full-support gradient (see
docs/training.md, "Training objectives").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from litemeta.config import ConfigError
from litemeta.lite import LiteSettings

__all__ = ["OBJECTIVES", "Objective", "negative_entropy_sum", "resolve_objective"]


@dataclass(frozen=True)
class Objective:
    """What one training objective back-propagates for a task.

    Args:
        name: the ``training.lite.objective`` value.
        unbiased_scaling: scale the drawn support rows' gradient by N/h.
        shared_subset: one subset for every set function of an adaptation (set encoder and
            backbone), instead of an independent draw for each.
        redraw_per_query_batch: adapt again, with a fresh subset, for every query batch;
            otherwise adapt once per task and back-propagate every query batch through it.
        batch_mean: average the cross-entropy over each query batch (otherwise over the
            task's queries, so the batches sum to the task's mean).
        query_scale_n_over_h: multiply the query loss by N/h.
        regularizer_per_query_batch: add the regulariser to every query batch, not divided
            by ``tasks_per_step``; otherwise once per task, divided by it.
        single_query_joins_previous: a last query batch of one image joins the one before.
    """

    name: str
    unbiased_scaling: bool
    shared_subset: bool
    redraw_per_query_batch: bool
    batch_mean: bool
    query_scale_n_over_h: bool
    regularizer_per_query_batch: bool
    single_query_joins_previous: bool

    def query_batches(self, n_query: int, batch_size: int) -> list[tuple[int, int]]:
        """``(start, end)`` of each query batch."""
        bounds = [
            (start, min(start + batch_size, n_query)) for start in range(0, n_query, batch_size)
        ]
        if (
            self.single_query_joins_previous
            and len(bounds) > 1
            and bounds[-1][1] - bounds[-1][0] == 1
        ):
            bounds[-2:] = [(bounds[-2][0], n_query)]
        return bounds

    def adaptations(self, batches: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        """The query batches grouped by the adaptation they go through."""
        return [[batch] for batch in batches] if self.redraw_per_query_batch else [batches]

    def batch_loss(
        self,
        cross_entropy_sum: Tensor,
        regularizer: Tensor | None,
        *,
        batch_queries: int,
        task_queries: int,
        support_size: int,
        h: int | None,
        tasks_per_step: int,
    ) -> Tensor:
        """The quantity back-propagated for one query batch; ``regularizer`` is ``None`` for
        the batches that do not carry it (see :meth:`carries_regularizer`)."""
        loss = cross_entropy_sum / (batch_queries if self.batch_mean else task_queries)
        if self.query_scale_n_over_h:
            loss = loss * (support_size / (h or support_size))
        if self.regularizer_per_query_batch:
            return loss / tasks_per_step + regularizer
        return (loss if regularizer is None else loss + regularizer) / tasks_per_step

    def carries_regularizer(self, last_of_task: bool) -> bool:
        """Whether a query batch adds the regulariser."""
        return self.regularizer_per_query_batch or last_of_task

    def adaptation_generators(
        self, generator: torch.Generator | None, count: int
    ) -> list[torch.Generator | None]:
        """The random source of each of ``count`` adaptations of a task: the task's own when
        it adapts once, else one seeded from it per adaptation, so that a shared subset (drawn
        from a copy of the generator) differs from one adaptation to the next."""
        if count == 1 and (generator is not None or not self.shared_subset):
            return [generator]
        seeds = torch.randint(0, 2**62, (count,), generator=generator).tolist()
        return [torch.Generator().manual_seed(seed) for seed in seeds]


def negative_entropy_sum(logits: Tensor) -> Tensor:
    """``sum_i sum_k p_ik log p_ik`` for ``p_i = softmax(logits_i)``: minimising it pushes the
    class posterior of queries from unknown classes towards uniform, PEELER's open-set loss
    (Liu et al., "Few-Shot Open-Set Recognition using Meta-Learning", CVPR 2020)."""
    log_probabilities = torch.log_softmax(logits, dim=-1)
    return (log_probabilities.exp() * log_probabilities).sum()


#: The named objectives, by ``training.lite.objective`` value.
OBJECTIVES: dict[str, Objective] = {
    objective.name: objective
    for objective in (
        Objective(
            "unbiased",
            unbiased_scaling=True,
            shared_subset=False,
            redraw_per_query_batch=False,
            batch_mean=False,
            query_scale_n_over_h=False,
            regularizer_per_query_batch=False,
            single_query_joins_previous=False,
        ),
        Objective(
            "lite_reference",
            unbiased_scaling=False,
            shared_subset=True,
            redraw_per_query_batch=True,
            batch_mean=True,
            query_scale_n_over_h=False,
            regularizer_per_query_batch=True,
            single_query_joins_previous=True,
        ),
        Objective(
            "orbit_reference",
            unbiased_scaling=False,
            shared_subset=True,
            redraw_per_query_batch=True,
            batch_mean=True,
            query_scale_n_over_h=True,
            regularizer_per_query_batch=True,
            single_query_joins_previous=False,
        ),
    )
}


def _check_flags(lite: LiteSettings, objective: Objective) -> None:
    """Refuse the flags that contradict the named objective."""
    name = objective.name
    if name == "unbiased":
        if lite.unbiased_scaling is False:
            raise ConfigError(
                "lite.unbiased_scaling=false drops the N/h scale, which biases the gradient, but "
                "lite.objective is 'unbiased' (the exact estimator): remove the flag, or choose "
                "objective lite_reference or orbit_reference"
            )
        if lite.shared_subset:
            raise ConfigError(
                "lite.shared_subset=true makes the gradient of nested set functions (the set "
                "encoder, then the FiLM-adapted backbone) biased, but lite.objective is "
                "'unbiased': remove the flag, or choose objective lite_reference or "
                "orbit_reference"
            )
        return
    if lite.unbiased_scaling:
        raise ConfigError(
            f"lite.unbiased_scaling=true scales the drawn rows by N/h, which the reference code "
            f"of lite.objective '{name}' does not do: remove the flag, or choose objective "
            "unbiased for the exact estimator"
        )
    if lite.stratified:
        raise ConfigError(
            f"lite.stratified=true draws per class with the scales N_c/h_c of the unbiased "
            f"estimator; the reference code of lite.objective '{name}' draws uniformly without "
            "a scale: remove the flag, or choose objective unbiased"
        )


def resolve_objective(lite: LiteSettings) -> tuple[Objective, LiteSettings]:
    """The objective that ``lite`` names, with its flags overridden by those set in ``lite``,
    and ``lite`` with every flag filled in; :class:`ConfigError` for an unknown name or flags
    that contradict it."""
    if lite.objective not in OBJECTIVES:
        raise ConfigError(
            f"lite.objective must be one of {list(OBJECTIVES)}, got {lite.objective!r} "
            "(docs/training.md, 'Training objectives', says what each back-propagates)"
        )
    named = OBJECTIVES[lite.objective]
    _check_flags(lite, named)
    flags = {
        key: getattr(named, key) if getattr(lite, key) is None else getattr(lite, key)
        for key in ("unbiased_scaling", "shared_subset", "redraw_per_query_batch")
    }
    return replace(named, **flags), replace(lite, **flags)
