"""The transfer-learning baseline: fine-tune a new linear head (and optionally FiLM
parameters) on the support set with a fixed number of Adam steps (Kingma and Ba, 2015).

Compared with meta-learners in Bronskill et al., NeurIPS 2021 and Massiceti et al.,
"ORBIT", ICCV 2021; FiLM fine-tuning follows Shysheya et al., "FiT", ICLR 2023.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from litemeta.backbones import Backbone
from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.learners.classifiers import LinearClassifier
from litemeta.learners.validation import check_support
from litemeta.lite import LitePass
from litemeta.tasks import pool_clips

__all__ = ["FineTuner"]


class FineTuner(BackboneLearner):
    """Adapt by gradient steps on the support set; nothing is meta-trained.

    Args:
        backbone: the frozen pretrained feature extractor.
        steps: Adam steps per task.
        learning_rate: Adam's learning rate for the head.
        learn_film: also fine-tune per-task FiLM parameters (from the identity); otherwise
            the support features are computed once and cached.
        film_learning_rate: Adam's learning rate for the FiLM parameters (they modulate
            every layer, so they need a smaller step than the head).
        batch_size: support images per step when ``learn_film`` (default: all of them).
    """

    name = "finetuner"
    meta_trainable = False

    def __init__(
        self,
        backbone: Backbone,
        *,
        steps: int = 50,
        learning_rate: float = 0.01,
        learn_film: bool = False,
        film_learning_rate: float = 1e-3,
        batch_size: int | None = None,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        super().__init__(backbone, train_backbone=False)
        self.steps = steps
        self.learning_rate = learning_rate
        self.learn_film = learn_film
        self.film_learning_rate = film_learning_rate
        self.batch_size = batch_size

    def adapt(
        self,
        support_images: Tensor,
        support_labels: Tensor,
        *,
        lite: LitePass | None = None,
        support_clips: Tensor | None = None,
    ) -> LinearClassifier:
        """Train a head on the support set (on its clips' mean features, with
        ``support_clips``). ``lite`` is accepted for the common interface and ignored: there
        is no meta-gradient to estimate."""
        way = check_support(support_images, support_labels)
        device = self.backbone.mean.device
        clips = None if support_clips is None else support_clips.to(device)
        labels = self.clip_labels(support_labels, support_clips).to(device)
        with torch.enable_grad():
            weight = torch.zeros(way, self.backbone.feature_dim, device=device, requires_grad=True)
            bias = torch.zeros(way, device=device, requires_grad=True)
            film = (
                [
                    (gamma.requires_grad_(), beta.requires_grad_())
                    for gamma, beta in self.backbone.identity_film()
                ]
                if self.learn_film
                else None
            )
            film_tensors = [t for pair in film or [] for t in pair]
            optimizer = torch.optim.Adam(
                [
                    {"params": [weight, bias], "lr": self.learning_rate},
                    {"params": film_tensors, "lr": self.film_learning_rate},
                ]
            )
            cached = None if film else self._cached_features(support_images, support_labels, clips)
            examples = labels.shape[0]
            batch = self.batch_size or examples
            generator = torch.Generator().manual_seed(0)
            for _ in range(self.steps):
                rows = torch.randperm(examples, generator=generator)[:batch]
                if cached is None and clips is None:
                    features = self.backbone(support_images[rows], film)
                elif cached is None:
                    used, local = torch.unique(clips[rows.to(device)], return_inverse=True)
                    features = pool_clips(self.backbone(support_images[used], film), local)
                else:
                    features = cached[rows.to(device)]
                loss = F.cross_entropy(features @ weight.T + bias, labels[rows.to(device)])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        film = [(g.detach(), b.detach()) for g, b in film] if film else None
        return LinearClassifier(
            self.backbone,
            support_images.shape[1:],
            weight.detach(),
            bias.detach(),
            film,
            task_film=film is not None,
        )

    def _cached_features(self, images: Tensor, labels: Tensor, clips: Tensor | None) -> Tensor:
        with torch.no_grad():
            return self.map_support(self.backbone, images, labels, None, clips)
