"""Parse and validate the TF Serving configs in `serving/` with the official protos.

`ModelServerConfig` comes from `tensorflow_serving.config` (shipped by
`tensorflow-serving-api`). The `BatchingParameters` and `MonitoringConfig`
protos are not in that wheel; where `tensorflow_serving` does not provide
them, we parse with a mirror built from the official `.proto` field names and
types (`session_bundle_config.proto`, `monitoring_config.proto`), so an unknown
or misspelled field still fails.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf import wrappers_pb2  # noqa: F401  (registers google/protobuf/wrappers.proto)

_F = descriptor_pb2.FieldDescriptorProto

# (name, number, type, label, type_name) from tensorflow_serving's official protos.
_BATCHING_FIELDS = [
    ("max_batch_size", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.Int64Value"),
    ("batch_timeout_micros", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.Int64Value"),
    ("max_enqueued_batches", 3, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.Int64Value"),
    ("num_batch_threads", 4, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.Int64Value"),
    ("thread_pool_name", 5, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.StringValue"),
    ("allowed_batch_sizes", 6, _F.TYPE_INT64, _F.LABEL_REPEATED, None),
    ("pad_variable_length_inputs", 7, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, None),
    ("enable_large_batch_splitting", 8, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.BoolValue"),
    ("max_execution_batch_size", 9, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.Int64Value"),
]


def _mirror_messages():
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="hierdiffuse_tf/serving_mirror.proto", package="tensorflow.serving.mirror",
        syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    batching = file.message_type.add(name="BatchingParameters")
    for name, number, type_, label, type_name in _BATCHING_FIELDS:
        field = batching.field.add(name=name, number=number, type=type_, label=label)
        if type_name:
            field.type_name = type_name
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=_F.TYPE_MESSAGE,
                         label=_F.LABEL_OPTIONAL, type_name=".tensorflow.serving.mirror.PrometheusConfig")
    pool.Add(file)
    get = lambda n: message_factory.GetMessageClass(pool.FindMessageTypeByName(n))  # noqa: E731
    return get("tensorflow.serving.mirror.BatchingParameters"), get("tensorflow.serving.mirror.MonitoringConfig")


def batching_parameters_class():
    try:
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2

        return session_bundle_config_pb2.BatchingParameters
    except ImportError:
        return _mirror_messages()[0]


def monitoring_config_class():
    try:
        from tensorflow_serving.config import monitoring_config_pb2

        return monitoring_config_pb2.MonitoringConfig
    except ImportError:
        return _mirror_messages()[1]


def _parse(path: str, cls):
    with open(path) as f:
        try:
            return text_format.Parse(f.read(), cls())
        except text_format.ParseError as error:
            raise ValueError(f"{path}: {error}") from None


def parse_models_config(path: str):
    from tensorflow_serving.config import model_server_config_pb2

    return _parse(path, model_server_config_pb2.ModelServerConfig)


def parse_batching_parameters(path: str):
    params = _parse(path, batching_parameters_class())
    sizes = list(params.allowed_batch_sizes)
    if sizes and (sizes != sorted(sizes) or sizes[-1] != params.max_batch_size.value):
        raise ValueError(f"{path}: allowed_batch_sizes must increase and end at max_batch_size "
                         f"({params.max_batch_size.value}); got {sizes}")
    return params


def parse_monitoring_config(path: str):
    return _parse(path, monitoring_config_class())
