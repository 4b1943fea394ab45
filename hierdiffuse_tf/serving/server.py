"""A development stand-in for `tensorflow_model_server` (SPEC 4). Not a production server.

It serves the newest version under `--model-base-path` through the same gRPC
API as TF Serving (`PredictionService.Predict`, `GetModelMetadata`,
`ModelService.GetModelStatus`), so the client, `hierdiffuse score` and
`hierdiffuse loadtest` can be exercised on machines without the TF Serving
binary. It loads the SavedModel with TensorFlow alone, like TF Serving does.

Bad requests never crash it: a wrong dtype or shape, a missing or unknown
input, or an unknown signature gets `INVALID_ARGUMENT` naming the input; an
unknown model gets `NOT_FOUND`. It binds to 127.0.0.1 by default and stops
cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import os
import signal
import threading
from concurrent import futures

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from hierdiffuse_tf.serving.client import MESSAGE_OPTIONS  # noqa: E402  (TF Serving's message limits)
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)


class RequestError(Exception):
    """A request the server refuses, with its gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def newest_version(base_path: str) -> tuple[int, str]:
    versions = [int(d) for d in os.listdir(base_path) if d.isdigit()
                and os.path.exists(os.path.join(base_path, d, "saved_model.pb"))] if os.path.isdir(base_path) else []
    if not versions:
        raise FileNotFoundError(f"No SavedModel version (a numbered folder with saved_model.pb) "
                                f"under {base_path!r}")
    return max(versions), os.path.join(base_path, str(max(versions)))


class LoadedModel:
    """One SavedModel version and its signatures' input specs."""

    def __init__(self, name: str, base_path: str):
        self.name = name
        self.version, self.path = newest_version(base_path)
        self.saved_model = tf.saved_model.load(self.path)
        self.signatures = dict(self.saved_model.signatures)
        with open(os.path.join(self.path, "saved_model.pb"), "rb") as f:
            proto = saved_model_pb2.SavedModel.FromString(f.read())
        self.signature_defs = proto.meta_graphs[0].signature_def

    def input_specs(self, signature: str) -> dict:
        return self.signatures[signature].structured_input_signature[1]

    def predict(self, signature_name: str, inputs) -> dict:
        if signature_name not in self.signatures:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Unknown signature {signature_name!r}; this model has "
                               f"{sorted(self.signatures)}")
        specs = self.input_specs(signature_name)
        missing = sorted(set(specs) - set(inputs))
        extra = sorted(set(inputs) - set(specs))
        if missing or extra:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Signature {signature_name!r}: missing inputs {missing}, unknown inputs {extra}")
        tensors = {}
        for name, spec in specs.items():
            proto = inputs[name]
            if proto.dtype != spec.dtype.as_datatype_enum:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Input {name!r}: expected dtype {spec.dtype.name}, got "
                                   f"{tf.dtypes.as_dtype(proto.dtype).name}")
            try:
                value = tf.make_ndarray(proto)
            except Exception as error:  # A malformed TensorProto.
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"Input {name!r}: {error}") from None
            if not spec.shape.is_compatible_with(value.shape):
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Input {name!r}: expected shape {spec.shape.as_list()} "
                                   f"(None = any), got {list(value.shape)}")
            tensors[name] = tf.constant(value, dtype=spec.dtype)
        # Inputs whose batch dimension is free must agree on it (`rank`: the candidates).
        batches = {name: tensors[name].shape[0] for name, spec in specs.items()
                   if spec.shape.rank and spec.shape[0] is None}
        if len(set(batches.values())) > 1:
            sizes = ", ".join(f"{name}: {size}" for name, size in sorted(batches.items()))
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Signature {signature_name!r}: the inputs' batch sizes differ ({sizes})")
        outputs = self.signatures[signature_name](**tensors)
        return {k: v.numpy() for k, v in outputs.items()}


GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


class _Servicer(prediction_service_pb2_grpc.PredictionServiceServicer,
                model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, model: LoadedModel):
        self.model = model

    def _check_model(self, spec, context):
        if spec.name != self.model.name:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"Servable not found for request: model {spec.name!r} (serving {self.model.name!r})")
        if spec.HasField("version") and spec.version.value != self.model.version:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"Version {spec.version.value} of {spec.name!r} is not served "
                          f"(serving {self.model.version})")

    def Predict(self, request, context):
        self._check_model(request.model_spec, context)
        signature = request.model_spec.signature_name or "serving_default"
        try:
            outputs = self.model.predict(signature, request.inputs)
        except RequestError as error:
            context.abort(error.code, str(error))
        except tf.errors.OpError as error:  # TF's status codes are gRPC's, as TF Serving returns them.
            context.abort(GRPC_CODES.get(error.error_code, grpc.StatusCode.INTERNAL), error.message)
        except Exception as error:  # Never crash on a request.
            context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.model.name
        response.model_spec.version.value = self.model.version
        response.model_spec.signature_name = signature
        wanted = set(request.output_filter) or set(outputs)
        for name in wanted:
            if name not in outputs:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Unknown output {name!r} in output_filter")
            response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
        return response

    def GetModelMetadata(self, request, context):
        self._check_model(request.model_spec, context)
        if list(request.metadata_field) not in ([], ["signature_def"]):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"Only metadata_field 'signature_def' is supported, got {list(request.metadata_field)}")
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in self.model.signature_defs.items():
            if not name.startswith("__"):
                signature_map.signature_def[name].CopyFrom(signature_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.model.name
        response.model_spec.version.value = self.model.version
        response.metadata["signature_def"].Pack(signature_map)
        return response

    def GetModelStatus(self, request, context):
        self._check_model(request.model_spec, context)
        response = get_model_status_pb2.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = self.model.version
        status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return response


class DevServer:
    """The stand-in server. `start()` returns the bound port; `stop()` shuts it down."""

    def __init__(self, model_base_path: str, model_name: str, host: str = "127.0.0.1",
                 port: int = 8500, workers: int = 8):
        self.model = LoadedModel(model_name, model_base_path)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=MESSAGE_OPTIONS)
        servicer = _Servicer(self.model)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, self.server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, self.server)
        self.address = f"{host}:{port}"
        self.port = self.server.add_insecure_port(self.address)
        if self.port == 0:
            raise OSError(f"Cannot bind {self.address}")

    def start(self) -> int:
        self.server.start()
        return self.port

    def stop(self, grace: float = 2.0) -> None:
        self.server.stop(grace).wait()

    def serve_forever(self) -> None:
        """Serves until SIGTERM or SIGINT, then drains in-flight requests and returns."""
        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        print(f"hierdiffuse serve-dev (development stand-in, not a production server): "
              f"{self.model.name} v{self.model.version} on {self.address.rsplit(':', 1)[0]}:{self.port}",
              flush=True)
        done.wait()
        self.stop()
        print("hierdiffuse serve-dev: stopped", flush=True)

