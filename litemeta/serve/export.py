"""A taught recogniser as one self-contained ONNX model: uint8 images in; calibrated
probabilities, "none of these" and the familiarity score out.

The classifier's embedding (the backbone with the task's FiLM parameters) and head (its
export form, e.g. prototypes, a linear head or Mahalanobis statistics) and the open-set
calibration (:mod:`litemeta.serve.calibration`: class means, background, temperature,
held-out scores, threshold) are baked in as constants; the class labels are stored in the
model's metadata under ``labels`` (a JSON list, in output order), with ``image_size``,
``temperature`` and ``threshold``. :func:`quantise` makes an int8 copy.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from litemeta.backbones import Backbone
from litemeta.learners.base import TaskClassifier
from litemeta.serve.calibration import Background, OpenSet, familiarity, open_set_scores

if TYPE_CHECKING:
    import onnx

__all__ = ["ExportedRecogniser", "export_onnx", "quantise"]

OPSET = 17


class ExportedRecogniser(nn.Module):
    """``[n, 3, S, S]`` uint8 images -> calibrated probabilities ``[n, way]``, "none of
    these" ``[n]`` (bool) and familiarity score ``[n]``, with no task input.

    Computes what the classifier and the web app do, from the classifier's own export form
    (:meth:`~litemeta.learners.base.TaskClassifier.export_embedding` and
    :meth:`~litemeta.learners.base.TaskClassifier.export_head`).
    """

    def __init__(self, classifier: TaskClassifier, open_set: OpenSet, threshold: float) -> None:
        super().__init__()
        self.embedding = classifier.export_embedding()
        self.head = classifier.export_head()
        self.register_buffer("temperature", torch.tensor(open_set.temperature))
        self.register_buffer("class_means", open_set.centres.detach().float().cpu())
        background = open_set.background
        self.register_buffer("background_mean", background.mean.detach().float().cpu())
        self.register_buffer("directions", background.directions.detach().float().cpu())
        kept = background.kept
        if kept is None:
            kept = torch.zeros(background.directions.shape[0])
        self.register_buffer("kept", kept.detach().float().cpu())
        self.register_buffer("knots", torch.tensor(open_set.knots, dtype=torch.float32))
        self.register_buffer("threshold", torch.tensor(threshold))
        self.requires_grad_(False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        features = self.embedding(images).float()
        logits = self.head(features)
        background = Background(self.background_mean, self.directions, self.kept)
        score = familiarity(open_set_scores(features, self.class_means, background), self.knots)
        return (logits / self.temperature).softmax(-1), score < self.threshold, score


OUTPUTS = ["probabilities", "none_of_these", "score"]


def export_onnx(
    backbone: Backbone,
    classifier: TaskClassifier,
    labels: list[str],
    open_set: OpenSet,
    threshold: float | None = None,
) -> bytes:
    """The ONNX bytes of :class:`ExportedRecogniser` (input ``image`` at ``backbone``'s image
    size, outputs :data:`OUTPUTS`, any batch size) with ``labels`` in its metadata;
    ``threshold`` defaults to the calibrated one."""
    import onnx

    threshold = open_set.threshold if threshold is None else threshold
    model = ExportedRecogniser(classifier, open_set, threshold).cpu().eval()
    size = backbone.image_size
    example = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes on shape checks, fixed at this size
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            input_names=["image"],
            output_names=OUTPUTS,
            dynamic_axes={"image": {0: "batch"}, **{name: {0: "batch"} for name in OUTPUTS}},
            opset_version=OPSET,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    metadata = {
        "labels": json.dumps(labels),
        "image_size": str(size),
        "temperature": repr(open_set.temperature),
        "threshold": repr(threshold),
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


#: Weight tensors smaller than this stay in float (biases, tiny layers): too little to gain.
SMALLEST_QUANTISED_WEIGHT = 256
#: The operations whose weight input (input 1) is quantised, with the axis of their
#: output channels in it (Gemm: 0 with transB, else 1).
WEIGHT_AXES = {"Conv": 0, "Gemm": 1, "MatMul": -1}


def _output_axis(node: onnx.NodeProto, weight_dims: int) -> int:
    if node.op_type == "Gemm":
        transposed = any(a.name == "transB" and a.i for a in node.attribute)
        return 0 if transposed else 1
    return WEIGHT_AXES[node.op_type] % weight_dims


def quantise(model: bytes) -> bytes:
    """An int8 copy of an exported model: the weights of its convolutions and matrix
    products stored as int8 with one symmetric scale per output channel, dequantised as the
    model loads (ONNX ``DequantizeLinear``); the rest, inputs, outputs and metadata alike.

    Weight-only: on an emoji recogniser (EfficientNet-Lite0, 84 px, 100 queries) it agreed
    with the float model on 96 % of top-1 answers, where onnxruntime's dynamic quantisation
    agreed on 55 % and its static QDQ quantisation, calibrated on the taught images, on 80 %
    (activations quantised too); the file is 3.5 MB instead of 13 (docs/benchmarks.md).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load_from_string(model)
    graph = proto.graph
    uses: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, position))
    dequantise = []
    for initializer in list(graph.initializer):
        users = uses.get(initializer.name, [])
        kinds = {node.op_type for node, _ in users}
        if (
            initializer.data_type != TensorProto.FLOAT
            or not users
            or len(kinds) != 1
            or not kinds <= set(WEIGHT_AXES)
            or any(position != 1 for _, position in users)
        ):
            continue
        weight = numpy_helper.to_array(initializer)
        if weight.size < SMALLEST_QUANTISED_WEIGHT:
            continue
        axis = _output_axis(users[0][0], weight.ndim)
        rows = np.moveaxis(weight, axis, 0).reshape(weight.shape[axis], -1)
        scale = np.abs(rows).max(axis=1) / 127
        scale[scale == 0] = 1
        shape = [1] * weight.ndim
        shape[axis] = -1
        values = np.clip(np.round(weight / scale.reshape(shape)), -127, 127).astype(np.int8)
        name = initializer.name
        graph.initializer.remove(initializer)
        graph.initializer.extend(
            [
                numpy_helper.from_array(values, f"{name}_int8"),
                numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
            ]
        )
        dequantise.append(
            helper.make_node(
                "DequantizeLinear", [f"{name}_int8", f"{name}_scale"], [name], axis=axis
            )
        )
    nodes = [*dequantise, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    return proto.SerializeToString()


def export_folders(checkpoint: str | Path, support: str | Path) -> tuple[bytes, list[str]]:
    """Adapt a checkpoint's learner to ``support/<class>/*`` images in one pass, calibrate
    it, and export it, as the web app's export does; returns the ONNX bytes and the labels."""
    from litemeta.evaluation.trained import adapt_checkpoint
    from litemeta.serve.quality import adapt_and_calibrate

    personalised = adapt_checkpoint(checkpoint, support, adapt_and_calibrate)
    classifier, open_set, _ = personalised.adapted
    classes = personalised.support.classes
    return export_onnx(personalised.learner.backbone, classifier, classes, open_set), classes
