"""Shared base of the learners built on a FiLM-able backbone."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor

from litemeta.backbones import Backbone
from litemeta.checkpoint import ModelMismatchError
from litemeta.learners.base import FewShotLearner
from litemeta.learners.registry import register_learner
from litemeta.lite import LitePass, SetFunction, check_chunk_size, lite_map
from litemeta.precision import at_least_float32
from litemeta.tasks import check_clips, pool_clips

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BackboneLearner",
    "option_names",
    "option_parameters",
    "other_film_layers_error",
]

PRETRAINED_BACKBONE_LR_SCALE = 0.1

#: Support images per forward call unless the config, the loader or a memory plan says
#: otherwise (:attr:`BackboneLearner.chunk_size`).
DEFAULT_CHUNK_SIZE = 64

_BOUND = "_bound_options"


def other_film_layers_error(saved_layers: int, current_layers: int) -> ModelMismatchError:
    """The error for a checkpoint whose meta-trained FiLM tensors were saved for another
    number of FiLM layers than the backbone has now."""
    return ModelMismatchError(
        f"this checkpoint was saved for {saved_layers} FiLM layers, but this backbone has "
        f"{current_layers}: it was saved for another FiLM placement (the published placement "
        "on EfficientNets now also modulates the stem's and the head's batch norm, as LITE); "
        "its weights cannot be loaded into this version: meta-train the learner again, or "
        "convert the checkpoint"
    )


def option_parameters(cls: type[BackboneLearner]) -> dict[str, inspect.Parameter]:
    """The keyword options that ``cls``'s constructor takes besides the backbone (following
    ``**kwargs`` up to the base classes that take them), by name."""
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(vars(klass)["__init__"]).parameters.values()
        for p in parameters:
            if p.kind is inspect.Parameter.KEYWORD_ONLY:
                found.setdefault(p.name, p)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            break
    return found


def option_names(cls: type[BackboneLearner]) -> list[str]:
    """The names of :func:`option_parameters`."""
    return list(option_parameters(cls))


def _records_options(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a learner's ``__init__`` so that the keyword options it is called with (defaults
    included) become the learner's :attr:`~BackboneLearner.options` once the outermost
    constructor returns. Options passed on through ``**kwargs`` are bound by the base class
    that takes them; an option a learner resolves (``backbone_lr_scale=None`` -> 0.1) is
    recorded as resolved when the learner keeps it in an attribute of the same name."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: BackboneLearner, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        outermost = _BOUND not in vars(self)
        recorded: dict[str, Any] = vars(self).setdefault(_BOUND, {})
        for parameter in signature.parameters.values():
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
                recorded.setdefault(parameter.name, bound.arguments[parameter.name])
        try:
            init(self, *args, **kwargs)
        finally:
            if outermost:
                del vars(self)[_BOUND]
        if outermost:
            attributes = vars(self)
            self.options = {
                name: attributes.get(name, recorded[name]) for name in option_names(type(self))
            }

    return __init__


class BackboneLearner(FewShotLearner):
    """A learner around a :class:`~litemeta.backbones.Backbone`.

    Args:
        backbone: the feature extractor.
        train_backbone: meta-train the backbone weights (otherwise they are frozen).
        backbone_lr_scale: the backbone's learning rate relative to the rest; default 0.1
            for a pretrained backbone, 1 for a randomly initialised one.

    :attr:`chunk_size` is how the learner runs, not what it computes: it is not one of its
    options, and a saved learner does not record it.
    """

    #: The name :func:`litemeta.learners.build_learner` knows this learner by. A subclass
    #: that sets it registers itself in :data:`litemeta.learners.LEARNERS`.
    name: ClassVar[str]

    #: JSON-able constructor options (besides the backbone) that rebuild this learner, taken
    #: from the constructor's keyword arguments (see :func:`_records_options`).
    options: dict[str, Any]

    #: Options added after learners of this class were first saved, each with its default,
    #: the value that builds what earlier versions built: :meth:`config` leaves such an
    #: option out while it has that value, so an earlier description still names the same
    #: architecture and loads.
    added_options: ClassVar[dict[str, Any]] = {}

    #: Earlier versions saved the chunk size as an option; it is a run-time setting now.
    withdrawn_settings: ClassVar[frozenset[str]] = frozenset({"options.chunk_size"})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in vars(cls):
            cls.__init__ = _records_options(vars(cls)["__init__"])  # type: ignore[method-assign]
        if "name" in vars(cls):
            register_learner(cls)

    def __init__(
        self,
        backbone: Backbone,
        *,
        train_backbone: bool,
        backbone_lr_scale: float | None = None,
    ) -> None:
        super().__init__()
        if backbone_lr_scale is None:
            backbone_lr_scale = PRETRAINED_BACKBONE_LR_SCALE if backbone.pretrained else 1.0
        self.backbone = backbone.requires_grad_(train_backbone)
        self.train_backbone = train_backbone
        self.backbone_lr_scale = backbone_lr_scale
        self.chunk_size = DEFAULT_CHUNK_SIZE

    @property
    def chunk_size(self) -> int:
        """Support images per forward call, with LITE and without (the no-grad pass, and
        the recomputation of LITE's drawn images); bounds memory. Set by the config
        (``model.chunk_size``), the loader (:func:`~litemeta.learners.load_learner`), the
        memory planner or ``evaluation.chunk_size``; default :data:`DEFAULT_CHUNK_SIZE`."""
        return self._chunk_size

    @chunk_size.setter
    def chunk_size(self, size: int) -> None:
        check_chunk_size(size)
        self._chunk_size = size

    def config(self) -> dict[str, Any]:
        """JSON-able description that :func:`litemeta.learners.learner_from_config` rebuilds."""
        options = {
            name: value
            for name, value in self.options.items()
            if name not in self.added_options or value != self.added_options[name]
        }
        return {"learner": self.name, "backbone": self.backbone.config(), "options": options}

    def map_support(
        self,
        fn: SetFunction,
        images: Tensor,
        labels: Tensor,
        lite: LitePass | None,
        clips: Tensor | None = None,
    ) -> Tensor:
        """``fn`` over the support images: through LITE when meta-training, else in chunks;
        with ``clips``, then averaged over each clip's images (one row per clip).

        LITE draws images, not clips: pooling is part of the downstream computation, so the
        gradient estimate stays unbiased. The result is float32 whatever the forward pass's
        precision: the statistics built from it (means, covariances, their factorisations)
        run in float32.
        """
        if lite is not None:
            mapped = lite.map(fn, images, labels, chunk_size=self.chunk_size)
        else:
            mapped = lite_map(fn, images, None, chunk_size=self.chunk_size)
        return pool_clips(at_least_float32(mapped), clips)

    @staticmethod
    def clip_labels(labels: Tensor, clips: Tensor | None) -> Tensor:
        """The label of each support clip (its first image's); ``labels`` without clips."""
        if clips is None:
            return labels
        check_clips(clips, labels.shape[0], "support")
        return labels[clips[:, 0].to(labels.device)]

    def parameter_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """The backbone at ``base_lr * backbone_lr_scale``, everything else at ``base_lr``."""
        in_backbone = {id(p) for p in self.backbone.parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {
                "name": "backbone",
                "params": [p for p in trainable if id(p) in in_backbone],
                "lr": base_lr * self.backbone_lr_scale,
            },
            {
                "name": "head",
                "params": [p for p in trainable if id(p) not in in_backbone],
                "lr": base_lr,
            },
        ]
        return [group for group in groups if group["params"]]


BackboneLearner.__init__ = _records_options(BackboneLearner.__init__)  # type: ignore[method-assign]
