"""The task classifiers' embedding and heads as self-contained modules that ``torch.onnx``
exports (:meth:`~litemeta.learners.base.TaskClassifier.export_embedding` and
:meth:`~litemeta.learners.base.TaskClassifier.export_head`): each holds a copy of its task's
tensors and uses only operations ONNX has at opset 17."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from litemeta.backbones import Backbone, FilmParameters

__all__ = ["FilmedBackboneModule", "LinearHead", "PrototypeHead", "WhitenedDistanceHead"]


def _frozen(tensor: Tensor) -> Tensor:
    return tensor.detach().float()


class FilmedBackboneModule(nn.Module):
    """A copy of a backbone under fixed FiLM parameters: images -> features ``[n, d]``."""

    def __init__(self, backbone: Backbone, film: FilmParameters | None) -> None:
        super().__init__()
        self.backbone = copy.deepcopy(backbone)
        pairs = [(g.detach().clone(), b.detach().clone()) for g, b in film or []]
        self.film_gammas = nn.ParameterList([nn.Parameter(g) for g, _ in pairs])
        self.film_betas = nn.ParameterList([nn.Parameter(b) for _, b in pairs])
        self.requires_grad_(False)

    def forward(self, images: Tensor) -> Tensor:
        film = list(zip(self.film_gammas, self.film_betas, strict=True)) or None
        return self.backbone(images, film)


class PrototypeHead(nn.Module):
    """``-scale * ||x - c_k||^2`` for prototypes ``c_k`` (ProtoNets)."""

    def __init__(self, prototypes: Tensor, scale: Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("centres", _frozen(prototypes))
        self.register_buffer("scale", torch.ones(()) if scale is None else _frozen(scale))

    def forward(self, features: Tensor) -> Tensor:
        distances = (features.unsqueeze(1) - self.centres.unsqueeze(0)).square().sum(-1)
        return -distances * self.scale


class LinearHead(nn.Module):
    """``w_k . x + b_k`` (CNAPs' generated head, the fine-tuning baseline's trained one)."""

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", _frozen(weight))
        self.register_buffer("bias", _frozen(bias))

    def forward(self, features: Tensor) -> Tensor:
        return features @ self.weight.T + self.bias


class WhitenedDistanceHead(nn.Module):
    """``-||L_k^-1 (x - mu_k)||^2``, the squared Mahalanobis distance with ``Q_k = L_k L_k^T``
    (Simple CNAPs), from the inverse Cholesky factors, computed here in float64 (ONNX has no
    triangular solve)."""

    def __init__(self, means: Tensor, cholesky_factors: Tensor) -> None:
        super().__init__()
        factors = cholesky_factors.detach().double()
        identity = torch.eye(factors.shape[-1], dtype=torch.float64, device=factors.device)
        inverse = torch.linalg.solve_triangular(factors, identity.expand_as(factors), upper=False)
        self.register_buffer("centres", _frozen(means))
        self.register_buffer("whitening", inverse.float())

    def forward(self, features: Tensor) -> Tensor:
        differences = features.unsqueeze(0) - self.centres.unsqueeze(1)  # [way, n, d]
        whitened = differences @ self.whitening.transpose(1, 2)
        return -whitened.square().sum(-1).T
