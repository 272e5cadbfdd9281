"""The backbone tests' shared model: a small, randomly initialised ResNet-18."""

import pytest
import torch

from litemeta.backbones import Backbone, create_backbone

from .helpers import SMALL


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    torch.manual_seed(0)
    return create_backbone("resnet18", image_size=SMALL, pretrained=False)
