"""The offline EfficientNet-Lite0 weights: they load, and they recognise a real photo."""

import pytest
import timm
import torch
from skimage import data

from litemeta.backbones import (
    create_backbone,
    efficientnet_lite0_file,
    efficientnet_lite0_imagenet_head,
)
from litemeta.backbones.weights import efficientnet_lite0_state_dict

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


def test_shipped_tensors_are_renamed_in_order_onto_timms_keys():
    shipped = list(torch.load(efficientnet_lite0_file(), weights_only=True).values())
    features = timm.create_model("tf_efficientnet_lite0", num_classes=0).state_dict()
    renamed = efficientnet_lite0_state_dict(list(features))
    assert list(renamed) == list(features)  # the 1000-class head is dropped
    for (key, tensor), original in zip(renamed.items(), shipped, strict=False):
        assert torch.equal(tensor, original), key
        assert tensor.shape == features[key].shape, key
    with_head = timm.create_model("tf_efficientnet_lite0").state_dict()
    assert list(efficientnet_lite0_state_dict(list(with_head))) == list(with_head)
    head = efficientnet_lite0_imagenet_head()
    assert torch.equal(head.weight, shipped[-2]) and torch.equal(head.bias, shipped[-1])
    assert head.weight.shape == (1000, 1280)


def test_keys_of_another_architecture_are_refused():
    keys = list(timm.create_model("resnet18", num_classes=0).state_dict())
    with pytest.raises(ValueError, match=r"holds 296 tensors but the model expects \d+"):
        efficientnet_lite0_state_dict(keys)
