"""A gRPC client on the official `tensorflow-serving-api` stubs, for notebooks and the CLI.

    client = Client("127.0.0.1:8500", "hierdiffuse")
    scores = client.predict(features)["ctr"]

It speaks to `tensorflow_model_server` and to the stand-in `hierdiffuse serve-dev` alike.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import statistics
import threading
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from hierdiffuse_tf.errors import HierDiffuseError


# TF Serving raises gRPC's message limits to the int32 maximum (its server sets
# `SetMaxMessageSize(kint32max)`), so a large batch is not refused as RESOURCE_EXHAUSTED;
# the client and the stand-in server set the same limits.
MAX_MESSAGE_BYTES = 2**31 - 1
MESSAGE_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]


class Client:
    """Scores features over gRPC with TF Serving's `PredictionService`.

    Args:
        target: "HOST:PORT" of the server.
        model_name: the served model's name.
        signature: the signature to call. Defaults to "serving_default".
        timeout: seconds per request. Defaults to 10.
    """

    def __init__(self, target: str, model_name: str, signature: str = "serving_default",
                 timeout: float = 10.0):
        self.target = target
        self.model_name = model_name
        self.signature = signature
        self.timeout = timeout
        self.channel = grpc.insecure_channel(target, options=MESSAGE_OPTIONS)  # As TF Serving's.
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def request(self, features: dict, signature: str | None = None) -> predict_pb2.PredictRequest:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature or self.signature
        for name, value in features.items():
            array = np.asarray(value)
            if array.dtype.kind in "iu":
                array = array.astype(np.int64)
            request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
        return request

    def predict(self, features: dict, signature: str | None = None) -> dict:
        """`{output name: numpy array}` for a dict of feature arrays."""
        response = self.predictions.Predict(self.request(features, signature), timeout=self.timeout)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def signatures(self) -> dict:
        """`{signature: {"inputs": {name: shape}, "outputs": [...]}}` from GetModelMetadata."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = self.model_name
        response = self.predictions.GetModelMetadata(request, timeout=self.timeout)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return {name: {"inputs": {k: [d.size for d in v.tensor_shape.dim] for k, v in sig.inputs.items()},
                       "outputs": sorted(sig.outputs)}
                for name, sig in signature_map.signature_def.items()}

    def status(self) -> list:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        response = self.models.GetModelStatus(request, timeout=self.timeout)
        return [(s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state))
                for s in response.model_version_status]

    def score_dataset(self, dataset, limit: int | None = None) -> dict:
        """Scores a `(features, label)` dataset; returns labels, scores, users and latencies."""
        from hierdiffuse_tf.models.base import MODEL_FEATURES

        labels, scores, users, latencies, seen = [], [], [], [], 0
        for features, label in dataset:
            if limit is not None and seen >= limit:
                break
            batch = {k: features[k].numpy() for k in MODEL_FEATURES}
            start = time.perf_counter()
            scores.append(self.predict(batch)["ctr"])
            latencies.append(time.perf_counter() - start)
            labels.append(label.numpy())
            users.append(features["user_id"].numpy())
            seen += len(labels[-1])
        out = {k: np.concatenate(v) for k, v in (("labels", labels), ("scores", scores), ("users", users))}
        if limit is not None:
            out = {k: v[:limit] for k, v in out.items()}
        out["latencies"] = np.array(latencies)
        return out

    def close(self) -> None:
        self.channel.close()


def latency_summary(latencies_s) -> dict:
    ms = np.asarray(latencies_s) * 1000.0
    if len(ms) == 0:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None}
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(statistics.fmean(ms))}


def require_loopback(target: str) -> None:
    """The load test only targets this machine: 127.0.0.0/8, ::1 or localhost."""
    host = target.rsplit(":", 1)[0].strip("[]")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise HierDiffuseError(f"--server {target!r}: cannot resolve {host!r}") from None
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise HierDiffuseError(f"--server {target!r}: the load test only runs against loopback "
                         f"(127.0.0.1, ::1, localhost); {host!r} resolves to {sorted(addresses)}")


def load_test(client: Client, features: dict, concurrency: int, requests: int,
              max_seconds: float = 120.0) -> dict:
    """Sends `requests` Predict calls from `concurrency` threads, stopping at `max_seconds`."""
    if concurrency < 1 or requests < 1:
        raise HierDiffuseError(f"--concurrency and --requests must be >= 1, got {concurrency}, {requests}")
    request = client.request(features)
    lock = threading.Lock()
    state = {"next": 0, "errors": 0, "codes": {}, "latencies": []}
    deadline = time.monotonic() + max_seconds

    def worker():
        while True:
            with lock:
                if state["next"] >= requests or time.monotonic() > deadline:
                    return
                state["next"] += 1
            start = time.perf_counter()
            try:
                client.predictions.Predict(request, timeout=client.timeout)
                elapsed = time.perf_counter() - start
                with lock:
                    state["latencies"].append(elapsed)
            except grpc.RpcError as error:
                with lock:
                    state["errors"] += 1
                    code = error.code().name
                    state["codes"][code] = state["codes"].get(code, 0) + 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max_seconds + 30)
    wall = time.perf_counter() - start
    done = len(state["latencies"])
    batch = len(next(iter(features.values())))
    return {"server": client.target, "model": client.model_name, "signature": client.signature,
            "concurrency": concurrency, "requests": requests, "sent": state["next"], "ok": done,
            "errors": state["errors"], "error_codes": state["codes"], "batch_size": batch,
            "seconds": wall, "qps": done / wall if wall else 0.0,
            "rows_per_sec": done * batch / wall if wall else 0.0,
            **latency_summary(state["latencies"]), "timed_out": state["next"] < requests}


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, default=str)
