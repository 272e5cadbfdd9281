"""tf.train.Example messages decoded with protobuf alone."""

import numpy as np
import pytest

from litemeta.data.example_proto import ProtobufDecodeError, parse_example
from tests.data.tf_example import Example, make_example


def test_parses_real_examples():
    data = make_example(image=[b"\x00\xff", b"x"], label=-7, scores=[0.25, -2.0])
    assert parse_example(data) == {
        "image": [b"\x00\xff", b"x"],
        "label": [-7],
        "scores": [0.25, -2.0],
    }


def test_values_keep_their_wire_types():
    data = make_example(big=[2**62, -(2**63)], scale=[0.1], raw=[b""])
    parsed = parse_example(data)
    assert parsed["big"] == [2**62, -(2**63)]  # int64, not rounded through a float
    assert parsed["scale"] == [float(np.float32(0.1))]  # float_list holds float32
    assert parsed["raw"] == [b""]


def test_a_feature_without_a_value_list_is_empty():
    example = Example()
    example.features.feature["nothing"].SetInParent()
    assert parse_example(example.SerializeToString()) == {"nothing": []}
    assert parse_example(b"") == {}


@pytest.mark.parametrize("data", [b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05\x0a\x03", b"\xff"])
def test_malformed_bytes_raise_the_decode_error(data):
    with pytest.raises(ProtobufDecodeError, match=r"not a valid tf\.train\.Example"):
        parse_example(data)
