"""The backbone module: frozen normalisation statistics in train mode."""

import torch

from litemeta.lite import lite_map

from .helpers import SMALL


def test_normalisation_statistics_stay_frozen_in_train_mode(backbone):
    images = torch.rand(4, 3, SMALL, SMALL)
    backbone.eval()
    with torch.no_grad():
        eval_features = backbone(images)
    backbone.train()
    assert backbone.training and not backbone.model.training
    running_means = [
        m.running_mean.clone() for m in backbone.model.modules() if hasattr(m, "running_mean")
    ]
    with torch.no_grad():
        torch.testing.assert_close(backbone(images), eval_features)
        torch.testing.assert_close(backbone(images[:1]), eval_features[:1])
    after = [m.running_mean for m in backbone.model.modules() if hasattr(m, "running_mean")]
    assert all(torch.equal(a, b) for a, b in zip(running_means, after, strict=True))
    # and LITE accepts it: no batch statistics couple the rows
    lite_map(backbone, images, h=2).sum().backward()
