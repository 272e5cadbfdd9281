"""The offline EfficientNet-Lite0 weights: they load, and they recognise a real photo."""

import torch
from skimage import data

from litemeta.backbones import (
    create_backbone,
    efficientnet_lite0_file,
    efficientnet_lite0_imagenet_head,
)

IMAGENET_CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_shipped_file_holds_the_296_reference_tensors():
    path = efficientnet_lite0_file()
    assert path.name == "efficientnet-lite0-57934424.pth"
    assert len(torch.load(path, map_location="cpu", weights_only=True)) == 296


def test_pretrained_default_puts_a_cat_class_in_the_top5_for_a_cat_photo():
    backbone = create_backbone()  # efficientnet_lite0, pretrained offline, 224 px
    head = efficientnet_lite0_imagenet_head()
    cat_photo = torch.from_numpy(data.chelsea()).permute(2, 0, 1).unsqueeze(0)  # uint8
    with torch.no_grad():
        probabilities = head(backbone(cat_photo)).softmax(dim=-1)[0]
    top5 = probabilities.topk(5).indices.tolist()
    assert top5[0] in IMAGENET_CATS
    assert IMAGENET_CATS & set(top5) >= {281, 282, 285}  # tabby, tiger cat, Egyptian cat
