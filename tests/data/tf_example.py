"""Real ``tf.train.Example`` protobuf messages for fixtures, built with the protobuf
library from the schema of tensorflow/core/example/{example,feature}.proto."""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _build_pool() -> descriptor_pool.DescriptorPool:
    proto = descriptor_pb2.FileDescriptorProto(
        name="litemeta_test/example.proto", package="tensorflow", syntax="proto3"
    )

    def message(name, fields, nested=()):
        msg = proto.message_type.add(name=name)
        for field_name, number, field_type, label, type_name, packed in fields:
            field = msg.field.add(name=field_name, number=number, type=field_type, label=label)
            if type_name:
                field.type_name = type_name
            if packed:
                field.options.packed = True
        for nested_msg in nested:
            msg.nested_type.add().CopyFrom(nested_msg)
        return msg

    rep, opt = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
    message("BytesList", [("value", 1, _F.TYPE_BYTES, rep, None, False)])
    message("FloatList", [("value", 1, _F.TYPE_FLOAT, rep, None, True)])
    message("Int64List", [("value", 1, _F.TYPE_INT64, rep, None, True)])
    feature = message(
        "Feature",
        [
            ("bytes_list", 1, _F.TYPE_MESSAGE, opt, ".tensorflow.BytesList", False),
            ("float_list", 2, _F.TYPE_MESSAGE, opt, ".tensorflow.FloatList", False),
            ("int64_list", 3, _F.TYPE_MESSAGE, opt, ".tensorflow.Int64List", False),
        ],
    )
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    entry = descriptor_pb2.DescriptorProto(name="FeatureEntry")
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=opt)
    entry.field.add(
        name="value", number=2, type=_F.TYPE_MESSAGE, label=opt, type_name=".tensorflow.Feature"
    )
    entry.options.map_entry = True
    message(
        "Features",
        [("feature", 1, _F.TYPE_MESSAGE, rep, ".tensorflow.Features.FeatureEntry", False)],
        nested=[entry],
    )
    message("Example", [("features", 1, _F.TYPE_MESSAGE, opt, ".tensorflow.Features", False)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return pool


_POOL = _build_pool()
Example = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.Example"))


def make_example(**features) -> bytes:
    """Serialize an Example; bytes -> bytes_list, int -> int64_list, float -> float_list."""
    example = Example()
    for name, values in features.items():
        values = values if isinstance(values, list) else [values]
        feature = example.features.feature[name]
        if all(isinstance(v, bytes) for v in values):
            feature.bytes_list.value.extend(values)
        elif all(isinstance(v, int) for v in values):
            feature.int64_list.value.extend(values)
        else:
            feature.float_list.value.extend(values)
    return example.SerializeToString()
