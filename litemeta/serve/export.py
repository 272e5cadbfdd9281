"""A taught recogniser as one self-contained ONNX model: uint8 images in, probabilities out.

The backbone, the task's FiLM parameters and the adapted classifier (prototypes, linear
head or Mahalanobis statistics) are baked in as constants; the class labels are stored in
the model's metadata under ``labels`` (a JSON list, in output order).
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from litemeta.backbones import Backbone
from litemeta.learners.base import TaskClassifier
from litemeta.learners.classifiers import (
    LinearClassifier,
    MahalanobisClassifier,
    PrototypeClassifier,
)

__all__ = ["ExportedRecogniser", "export_onnx"]

OPSET = 17


class ExportedRecogniser(nn.Module):
    """``[n, 3, S, S]`` uint8 images -> ``[n, way]`` class probabilities, with no task input.

    Computes exactly what the classifier does, but Mahalanobis logits use the precomputed
    inverse Cholesky factors (ONNX has no triangular solve).
    """

    def __init__(self, backbone: Backbone, classifier: TaskClassifier) -> None:
        super().__init__()
        self.backbone = backbone
        film = getattr(classifier, "film", None) or []
        self.film_gammas = nn.ParameterList([nn.Parameter(g.detach().clone()) for g, _ in film])
        self.film_betas = nn.ParameterList([nn.Parameter(b.detach().clone()) for _, b in film])
        if isinstance(classifier, PrototypeClassifier):
            self.kind = "prototypes"
            scale = classifier.distance_scale
            self.register_buffer("centres", classifier.prototypes.detach().float())
            self.register_buffer(
                "scale", torch.ones(()) if scale is None else scale.detach().float()
            )
        elif isinstance(classifier, LinearClassifier):
            self.kind = "linear"
            self.register_buffer("weight", classifier.weight.detach().float())
            self.register_buffer("bias", classifier.bias.detach().float())
        elif isinstance(classifier, MahalanobisClassifier):
            self.kind = "mahalanobis"
            factors = classifier.cholesky_factors.detach().double()
            identity = torch.eye(factors.shape[-1], dtype=torch.float64).expand_as(factors)
            inverse = torch.linalg.solve_triangular(factors, identity, upper=False)
            self.register_buffer("centres", classifier.means.detach().float())
            self.register_buffer("whitening", inverse.float())
        else:
            raise ValueError(
                f"cannot export a {type(classifier).__name__}; export works for ProtoNets, "
                "CNAPs and Simple CNAPs recognisers"
            )
        self.requires_grad_(False)

    def forward(self, images: Tensor) -> Tensor:
        film = list(zip(self.film_gammas, self.film_betas, strict=True)) or None
        features = self.backbone(images, film).float()
        if self.kind == "prototypes":
            distances = (features.unsqueeze(1) - self.centres.unsqueeze(0)).square().sum(-1)
            logits = -distances * self.scale
        elif self.kind == "linear":
            logits = features @ self.weight.T + self.bias
        else:
            differences = features.unsqueeze(0) - self.centres.unsqueeze(1)  # [way, n, d]
            whitened = differences @ self.whitening.transpose(1, 2)
            logits = -whitened.square().sum(-1).T
        return logits.softmax(-1)


def export_onnx(backbone: Backbone, classifier: TaskClassifier, labels: list[str]) -> bytes:
    """The ONNX bytes of :class:`ExportedRecogniser` (input ``image``, output
    ``probabilities``, any batch size) with ``labels`` in its metadata."""
    import onnx

    model = ExportedRecogniser(copy.deepcopy(backbone), classifier).cpu().eval()
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
            output_names=["probabilities"],
            dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
            opset_version=OPSET,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = "labels", json.dumps(labels)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "image_size", str(size)
    return proto.SerializeToString()


def export_folders(checkpoint: str | Path, support: str | Path) -> tuple[bytes, list[str]]:
    """Adapt a checkpoint's learner to ``support/<class>/*`` images in one pass and export
    it, as the web app's export does; returns the ONNX bytes and the labels."""
    from litemeta.experiment.jobs import load_trained_learner, read_support_set

    learner = load_trained_learner(checkpoint).eval()
    device = next(learner.parameters()).device
    classes, images, labels, _ = read_support_set(
        Path(support), learner.backbone.image_size, skip_unreadable=False
    )
    with torch.no_grad():
        classifier = learner.adapt(
            torch.stack(images).to(device), torch.tensor(labels, device=device)
        )
    return export_onnx(learner.backbone, classifier, classes), classes
