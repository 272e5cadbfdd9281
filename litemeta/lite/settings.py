"""LITE's settings (the ``training.lite`` section) and one adaptation's pass with them
(Bronskill et al., NeurIPS 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from litemeta.lite.deferred import DeferredBackward, FirstPasses
from litemeta.lite.estimator import lite_map
from litemeta.lite.rows import SetFunction

__all__ = ["LitePass", "LiteSettings"]


@dataclass
class LiteSettings:
    """LITE's settings (Bronskill et al., 2021): the ``training.lite`` section of a training
    config. A learner maps its support set through a :class:`LitePass` built from them.

    Args:
        h: support images back-propagated per set function; ``None``: all of them (full
            back-propagation); ``"auto"``: the largest that fits a memory budget, which the
            trainer resolves before training (:mod:`litemeta.training.memory_plan`).
        stratified: draw the subset per class (see :func:`~litemeta.lite.draw_subset`).
        gradient_checkpointing: with full back-propagation, recompute each chunk's
            activations in the backward pass instead of keeping them.
        objective: the training objective (``unbiased``, ``lite_reference``,
            ``orbit_reference``: :mod:`litemeta.training.objective`); the three flags below
            left ``None`` take its values, which the trainer fills in. Unfilled,
            :meth:`LitePass.map` reads ``None`` as the unbiased estimator's value.
        unbiased_scaling: ``False`` drops the N/h gradient scale, as the published
            reference code does (biased; for comparisons only).
        shared_subset: one subset for every map of an adaptation (drawn from a copy of its
            pass's ``generator``, which then must be set), as the reference code does;
            biased for nested set functions.
        redraw_per_query_batch: the trainer adapts again, with fresh subsets, for every
            query batch (:mod:`litemeta.training.objective`).
        row_tolerance: see :func:`~litemeta.lite.lite_map` (default: by the precision in
            effect).
        rows_with_queries: ask :func:`litemeta.training.backward_task` to recompute the
            backbone's drawn rows in the last query batch's forward pass: one pass fewer
            (faster where kernel launches dominate, as on a GPU with small batches), but
            that batch then holds ``h`` more images' activations.
    """

    h: int | Literal["auto"] | None = 40
    objective: str = "unbiased"
    stratified: bool = False
    gradient_checkpointing: bool = False
    unbiased_scaling: bool | None = None
    shared_subset: bool | None = None
    redraw_per_query_batch: bool | None = None
    row_tolerance: float | None = None
    rows_with_queries: bool = False


@dataclass(frozen=True)
class LitePass:
    """One adaptation's LITE: the settings and the run-time state of its maps, which a
    learner's ``adapt(..., lite=)`` receives (the training step builds one per adaptation).

    Args:
        settings: LITE's settings.
        generator: random source of the draws.
        deferred: collects every map's drawn rows, which ``deferred.backward()``
            back-propagates once the loss's gradient is known (as
            :func:`litemeta.training.backward_task` does); ``None``: each map recomputes its
            rows at once, spliced into the graph.
        first_passes: the first passes kept for re-adaptations to the same support set
            (see :class:`~litemeta.lite.FirstPasses`).

    Each call of :meth:`map` draws a fresh subset, so nested set functions (CNAPs' set
    encoder, then the adapted backbone on the same support set) get independent subsets:
    the product of two estimates is unbiased only when their draws are independent
    (unless ``settings.shared_subset``).
    """

    settings: LiteSettings
    generator: torch.Generator | None = None
    deferred: DeferredBackward | None = None
    first_passes: FirstPasses | None = None

    def map(
        self,
        fn: SetFunction,
        inputs: Tensor,
        labels: Tensor | None = None,
        *,
        chunk_size: int | None = None,
    ) -> Tensor:
        """:func:`~litemeta.lite.lite_map` with these settings and an independent draw (with
        ``shared_subset``, the draw of every other map of this pass); ``chunk_size`` rows
        per forward call."""
        settings = self.settings
        if settings.h == "auto":
            raise ValueError(
                "h='auto' must be resolved to a number before a support set is mapped: "
                "litemeta.training.memory_plan.plan_training does it (the trainer calls it)"
            )
        generator = self.generator
        if settings.shared_subset:
            if generator is None:
                raise ValueError(
                    "shared_subset=True draws every map's subset from a copy of the generator: "
                    "give the LitePass a generator (a fresh one for each adaptation)"
                )
            generator = torch.Generator(generator.device).set_state(generator.get_state())
        return lite_map(
            fn,
            inputs,
            settings.h,
            chunk_size=chunk_size,
            labels=labels,
            stratified=settings.stratified,
            generator=generator,
            gradient_checkpointing=settings.gradient_checkpointing,
            unbiased_scaling=settings.unbiased_scaling is not False,
            row_tolerance=settings.row_tolerance,
            deferred=self.deferred,
            first_passes=self.first_passes,
        )
