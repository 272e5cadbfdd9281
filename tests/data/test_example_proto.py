"""tf.train.Example messages decoded with protobuf alone."""

from litemeta.data.example_proto import parse_example
from tests.data.tf_example import make_example


def test_parses_real_examples():
    data = make_example(image=[b"\x00\xff", b"x"], label=-7, scores=[0.25, -2.0])
    assert parse_example(data) == {
        "image": [b"\x00\xff", b"x"],
        "label": [-7],
        "scores": [0.25, -2.0],
    }
