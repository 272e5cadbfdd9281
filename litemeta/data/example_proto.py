"""``tf.train.Example`` protocol buffers decoded with the ``protobuf`` library, without
TensorFlow.

The message classes are built when first needed from the field numbers of the published
schema (tensorflow/core/example/{example,feature}.proto): ``Example{features=1: Features}``,
``Features{feature=1: map<string, Feature>}``, ``Feature{oneof kind: bytes_list=1 |
float_list=2 | int64_list=3}``, each list ``{repeated value=1}`` (floats and int64s packed).
``protobuf`` is imported only here, on first use, so the rest of the package works without it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

FeatureValue = list[bytes] | list[float] | list[int]

_SCHEMA_FILE = "litemeta/tf_example.proto"
_LISTS = ("bytes_list", "float_list", "int64_list")
_LIST_MESSAGES = ("BytesList", "FloatList", "Int64List")


class ProtobufDecodeError(ValueError):
    """The bytes are not a well-formed ``tf.train.Example``."""


@cache
def _example_class() -> Any:
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError as error:
        raise ImportError(
            "reading Meta-Dataset records needs protobuf: pip install protobuf"
        ) from error
    field = descriptor_pb2.FieldDescriptorProto
    repeated, optional = field.LABEL_REPEATED, field.LABEL_OPTIONAL

    def add_message_field(
        message: Any, name: str, number: int, type_name: str, label: int = optional, **extra: Any
    ) -> None:
        """A field of message type ``tensorflow.<type_name>``."""
        message.field.add(
            name=name,
            number=number,
            type=field.TYPE_MESSAGE,
            label=label,
            type_name=f".tensorflow.{type_name}",
            **extra,
        )

    schema = descriptor_pb2.FileDescriptorProto(
        name=_SCHEMA_FILE, package="tensorflow", syntax="proto3"
    )
    for name, value_type in zip(
        _LIST_MESSAGES, (field.TYPE_BYTES, field.TYPE_FLOAT, field.TYPE_INT64), strict=True
    ):
        message = schema.message_type.add(name=name)
        message.field.add(name="value", number=1, type=value_type, label=repeated)
    feature = schema.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, list_type) in enumerate(zip(_LISTS, _LIST_MESSAGES, strict=True), start=1):
        add_message_field(feature, name, number, list_type, oneof_index=0)
    features = schema.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=optional)
    add_message_field(entry, "value", 2, "Feature")
    add_message_field(features, "feature", 1, "Features.FeatureEntry", label=repeated)
    example = schema.message_type.add(name="Example")
    add_message_field(example, "features", 1, "Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(schema)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def parse_example(data: bytes) -> dict[str, FeatureValue]:
    """Decode a serialized ``tf.train.Example`` into ``{feature name: list of values}``."""
    from google.protobuf.message import DecodeError

    example = _example_class()()
    try:
        example.ParseFromString(data)
    except DecodeError as error:
        raise ProtobufDecodeError(f"not a valid tf.train.Example ({error})") from None
    features: dict[str, FeatureValue] = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        features[key] = list(getattr(feature, kind).value) if kind else []
    return features
