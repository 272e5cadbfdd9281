"""``encoder_input_norm``: the set encoder normalises its images with LITE's mean = std = 0.5
or, as ORBIT's (its set encoder sees the frames its backbone sees), with the backbone's."""

import pytest
import torch

from litemeta.learners import build_learner, learner_from_config

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _learner(**options):
    return build_learner(
        "simple_cnaps",
        "timm:tf_efficientnet_b0",
        32,
        pretrained=False,
        encoder_image_size=32,
        encoder_channels=8,
        **options,
    ).eval()


@pytest.mark.parametrize(
    ("option", "mean", "std"),
    [
        ({}, torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.5)),
        ({"encoder_input_norm": "backbone"}, IMAGENET_MEAN, IMAGENET_STD),
    ],
)
def test_the_set_encoder_sees_images_normalised_as_chosen(option, mean, std):
    torch.manual_seed(0)
    learner = _learner(**option)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = learner.set_encoder.layers((images - mean) / std)
        torch.testing.assert_close(learner.set_encoder(images), expected)


def test_the_description_names_the_option_only_off_its_earlier_default():
    assert "encoder_input_norm" not in _learner().config()["options"]
    learner = _learner(encoder_input_norm="backbone")
    assert learner.config()["options"]["encoder_input_norm"] == "backbone"
    rebuilt = learner_from_config(learner.config())
    torch.testing.assert_close(rebuilt.set_encoder.mean, IMAGENET_MEAN.flatten())


def test_an_unknown_value_is_refused():
    with pytest.raises(ValueError, match="encoder_input_norm must be one of"):
        _learner(encoder_input_norm="imagenet")
