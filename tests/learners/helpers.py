"""Tiny real tasks, tiny models and a meta-training loop for the learner tests."""

import torch
from torch import nn

from litemeta.backbones import Backbone
from litemeta.lite import LitePass, LiteSettings

IMAGE_SIZE = 32
#: Pretrained ImageNet features need more than 32 px; images are upsampled to this.
BACKBONE_SIZE = 64
#: Options that keep each learner small and quick in tests, by learner name; a learner not
#: named here is tested as built by default (see :func:`tiny_options`).
TINY_OPTIONS: dict[str, dict] = {
    "cnaps": {"encoder_image_size": 32, "encoder_channels": 8},
    "simple_cnaps": {"encoder_image_size": 32, "encoder_channels": 8},
    "finetuner": {"steps": 3},
}


def tiny_options(name: str) -> dict:
    """The test options of learner ``name`` (none for a learner without any)."""
    return dict(TINY_OPTIONS.get(name, {}))


#: Clearly different base colours, one per class.
CLASS_COLOURS = torch.tensor(
    [[220, 40, 40], [40, 200, 40], [40, 60, 220], [230, 220, 50], [200, 60, 210]]
)


def colour_task(way: int, shots: int, queries: int, seed: int = 0, size: int = IMAGE_SIZE):
    """An easily separable task: each class is a noisy image of its own colour with a
    randomly placed dark square. Returns uint8 support/query images and labels."""
    generator = torch.Generator().manual_seed(seed)

    def images_of(labels: torch.Tensor) -> torch.Tensor:
        base = CLASS_COLOURS[labels].view(-1, 3, 1, 1).float()
        noise = torch.randn(labels.numel(), 3, size, size, generator=generator) * 20
        images = (base + noise).clamp(0, 255)
        for image in images:
            top, left = torch.randint(0, size // 2, (2,), generator=generator).tolist()
            image[:, top : top + size // 4, left : left + size // 4] *= 0.6
        return images.to(torch.uint8)

    support_labels = torch.arange(way).repeat_interleave(shots)
    query_labels = torch.arange(way).repeat_interleave(queries)
    return images_of(support_labels), support_labels, images_of(query_labels), query_labels


class TinyCNN(nn.Module):
    """Conv -> BatchNorm -> ReLU -> Conv -> BatchNorm -> ReLU -> pool: a backbone small
    enough for thousands of gradient draws."""

    num_features = 6

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, self.num_features, 3, stride=2, padding=1),
            nn.BatchNorm2d(self.num_features),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        for norm in (self.layers[1], self.layers[4]):
            nn.init.normal_(norm.weight, 1.0, 0.3)
            nn.init.normal_(norm.bias, 0.0, 0.3)
            norm.running_mean.normal_(0.0, 0.2)
            norm.running_var.uniform_(0.5, 1.5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


def tiny_backbone(image_size: int = 8) -> Backbone:
    return Backbone(TinyCNN(), name="tiny", image_size=image_size, mean=(0.5,) * 3, std=(0.5,) * 3)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(dim=1) == labels).float().mean().item()


def meta_train(learner, steps: int, h: int, lr: float = 1e-3) -> list[float]:
    """A few LITE meta-training steps on fresh colour tasks; returns the losses."""
    optimizer = torch.optim.Adam(learner.parameter_groups(lr))
    generator = torch.Generator().manual_seed(123)
    learner.train()
    losses = []
    for step in range(steps):
        support, support_labels, query, query_labels = colour_task(3, 4, 4, seed=100 + step)
        classifier = learner.adapt(
            support, support_labels, lite=LitePass(LiteSettings(h=h), generator)
        )
        loss = nn.functional.cross_entropy(classifier(query), query_labels)
        loss = loss + classifier.regularizer
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    learner.eval()
    return losses
