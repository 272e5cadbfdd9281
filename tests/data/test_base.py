"""The image collection interface: styles into class pools, the unreadable-image policy and
the decoded-image cache."""

import pytest

from litemeta.data import load_emoji
from litemeta.data.base import class_pools
from litemeta.data.images import ImageLoadError, NoReplacementError
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


def test_pools_hold_the_items_of_each_side_by_style():
    styles = [["b", "a", "c", "a"], ["c", "c", "a", "b"]]
    collection = SyntheticCollection([4, 4], styles=styles)
    shared = class_pools(collection)
    assert [p.support.tolist() for p in shared] == [[0, 1, 2, 3]] * 2
    assert all(p.shared and p.query is None for p in shared)
    split = class_pools(collection, support_styles=["a"])  # query: every other style
    assert [(p.support.tolist(), p.query.tolist()) for p in split] == [
        ([1, 3], [0, 2]),
        ([2], [0, 1, 3]),
    ]
    chosen = class_pools(collection, support_styles=["a", "b"], query_styles=["c"], classes=[1])
    assert [(p.class_id, p.name) for p in chosen] == [(1, "class1")]
    assert (chosen[0].support.tolist(), chosen[0].query.tolist()) == ([2, 3], [0, 1])
    with pytest.raises(ValueError, match="no styles left for the query set"):
        class_pools(collection, support_styles=["a", "b", "c"])
    queries_only = class_pools(collection, query_styles=["c"])  # support: every other style
    assert [(p.support.tolist(), p.query.tolist()) for p in queries_only] == [
        ([0, 1, 3], [2]),
        ([2, 3], [0, 1]),
    ]
    with pytest.raises(ValueError, match="no styles left for the support set"):
        class_pools(collection, query_styles=["a", "b", "c"])


def test_skipping_gives_up_when_no_image_of_the_class_reads():
    collection = SyntheticCollection([2, 2], broken={(1, 0), (1, 1)}, on_error="skip")
    warns = pytest.warns(UserWarning, match=r"skipping unreadable image.*synthetic/1/[01]")
    with warns, pytest.raises(ImageLoadError, match="no readable image in class 'class1'"):
        collection.load_image(1, 0)
    assert collection.load_image(0, 1)[1, 0, 0] == 1  # other classes are unaffected


class _DamagedIndex(SyntheticCollection):
    """A reader that must read a damaged file even to say where an image lives."""

    def item_source(self, class_id: int, item: int) -> str:
        if (class_id, item) in self.broken:
            raise ImageLoadError("cannot index synthetic.records: truncated")
        return super().item_source(class_id, item)


def test_giving_up_says_so_even_where_the_image_cannot_be_located():
    collection = _DamagedIndex([2], broken={(0, 0), (0, 1)}, on_error="skip")
    with pytest.warns(UserWarning), pytest.raises(NoReplacementError, match="to replace image 0"):
        collection.load_image(0, 0)
