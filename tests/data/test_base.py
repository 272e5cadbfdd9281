"""The image collection interface: styles into class pools, the unreadable-image policy and
the decoded-image cache."""

import pytest

from litemeta.data import load_emoji
from litemeta.data.base import class_pools
from litemeta.data.images import ImageLoadError
from tests.data.synthetic import SyntheticCollection


def test_style_options_are_validated():
    collection = SyntheticCollection([4] * 3, styles=[["a", "b", "c", "d"]] * 3)
    with pytest.raises(ValueError, match="unknown styles"):
        class_pools(collection, support_styles=["zz"])
    with pytest.raises(ValueError, match="both support_styles and query_styles"):
        class_pools(collection, support_styles=["a"], query_styles=["a", "b"])
    with pytest.raises(ValueError, match="no per-image styles"):
        class_pools(SyntheticCollection([4]), support_styles=["a"])


def test_unreadable_image_policy():
    collection = SyntheticCollection([3] * 5, broken={(0, 0)}, on_error="skip")
    with pytest.warns(UserWarning, match="synthetic/0/0"):
        image = collection.load_image(0, 0)
    assert image[1, 0, 0] == 1, "the next readable image of the class is used"
    strict = SyntheticCollection([3] * 5, broken={(0, 0)})
    with pytest.raises(ImageLoadError, match="synthetic/0/0"):
        strict.load_image(0, 0)


def test_decoded_cache_is_kept_per_decode_size():
    collection = load_emoji("validation")
    collection.cache_decoded()
    stored = collection.load_image(0, 0)
    collection.decode_size = 20
    assert collection.load_image(0, 0).shape == (3, 20, 20)
    collection.decode_size = None
    assert collection.load_image(0, 0) is stored
