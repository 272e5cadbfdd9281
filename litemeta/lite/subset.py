"""The rows LITE back-propagates: how many (``h``), which, and with what gradient scale
(Bronskill et al., NeurIPS 2021)."""

from __future__ import annotations

import math
from numbers import Integral

import torch
from torch import Tensor

__all__ = ["check_h", "draw_subset"]


def check_h(h: object, *, name: str = "h", auto: bool = False, set_size: int | None = None) -> None:
    """Refuse an ``h`` (support rows back-propagated per set function) that is not ``None``
    (full back-propagation), ``"auto"`` (where ``auto``: planned for a memory budget) or a
    whole number from 1 (up to ``set_size``, when given). ``name`` is how the message calls
    it (``lite.h`` in a config, ``--h`` on the command line)."""
    if h is None or (auto and h == "auto"):
        return
    if isinstance(h, bool) or not isinstance(h, Integral):
        allowed = "null, auto or a whole number" if auto else "a whole number or None"
        raise TypeError(f"{name} must be {allowed}, got {h!r}")
    if h < 1 or (set_size is not None and h > set_size):
        if set_size is not None:
            allowed = f"lie in 1..{set_size} (the set size)"
        else:
            allowed = "be null, auto or at least 1" if auto else "be at least 1 (or None: all rows)"
        raise ValueError(f"{name} must {allowed}, got {h}")


def draw_subset(
    num_rows: int,
    h: int,
    *,
    labels: Tensor | None = None,
    stratified: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw the back-propagated rows and their gradient scales.

    Returns ``(indices, scales)``: ``h`` distinct row indices drawn uniformly without
    replacement with scale ``num_rows / h`` each, or, when ``stratified``, ``h_c`` rows of
    each class c (every class gets at least one, the rest proportional to class size) with
    scale ``N_c / h_c``. Both designs make ``sum_{n in H} scale_n g_n`` unbiased for
    ``sum_n g_n``.
    """
    check_h(h, set_size=num_rows)
    device = generator.device if generator is not None else None
    if not stratified:
        indices = torch.randperm(num_rows, generator=generator, device=device)[:h]
        return indices, torch.full((h,), num_rows / h, dtype=torch.float64)
    if labels is None:
        raise ValueError("stratified=True needs labels: pass the support labels")
    labels = labels.detach().cpu()
    if labels.shape != (num_rows,):
        raise ValueError(
            f"labels must have one entry per row: {num_rows} rows, labels {tuple(labels.shape)}"
        )
    classes, class_sizes = torch.unique(labels, return_counts=True)
    per_class = _allocate_per_class(class_sizes.tolist(), h)
    chosen, scales = [], []
    for label, size, take in zip(classes.tolist(), class_sizes.tolist(), per_class, strict=True):
        members = torch.nonzero(labels == label).flatten()
        picked = members[torch.randperm(size, generator=generator, device=device).cpu()[:take]]
        chosen.append(picked)
        scales.append(torch.full((take,), size / take, dtype=torch.float64))
    return torch.cat(chosen), torch.cat(scales)


def _allocate_per_class(class_sizes: list[int], h: int) -> list[int]:
    """Split ``h`` draws over classes: one each, the rest by largest remainder of size share."""
    num_classes = len(class_sizes)
    if h < num_classes:
        raise ValueError(
            f"stratified sampling needs h >= the number of classes ({num_classes}), got h={h}; "
            "raise h or use uniform sampling (stratified=False)"
        )
    total = sum(class_sizes)
    spare = h - num_classes
    room = [size - 1 for size in class_sizes]
    shares = [spare * size / total for size in class_sizes]
    extra = [min(math.floor(share), r) for share, r in zip(shares, room, strict=True)]
    leftover = spare - sum(extra)
    order = sorted(
        range(num_classes), key=lambda c: shares[c] - math.floor(shares[c]), reverse=True
    )
    while leftover > 0:
        for c in order:
            if leftover and extra[c] < room[c]:
                extra[c] += 1
                leftover -= 1
    return [1 + e for e in extra]
