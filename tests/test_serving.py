"""gRPC scoring against the stand-in server: equality with Keras, determinism, error codes, load test."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf

from conftest import SMOKE
from hierdiffuse_tf import cli, export
from hierdiffuse_tf.config import HierDiffuseConfig
from hierdiffuse_tf.models import HierDiffuse
from hierdiffuse_tf.serving.client import Client, load_test, require_loopback
from hierdiffuse_tf.serving.server import DevServer


def start_tensorflow_model_server(base: str, port: int):
    """The real server, where its binary is on PATH (it is not on our development machines)."""
    proc = subprocess.Popen([shutil.which("tensorflow_model_server"), f"--port={port}",
                             "--model_name=hierdiffuse", f"--model_base_path={os.path.abspath(base)}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = Client(f"127.0.0.1:{port}", "hierdiffuse", timeout=2)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if client.status()[0][1] == "AVAILABLE":
                return proc
        except grpc.RpcError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("tensorflow_model_server did not become AVAILABLE in 60 s")


@pytest.fixture(scope="module", params=["stand-in", "tensorflow_model_server"])
def served(request, exported_model):
    """The tiny exported model behind the stand-in, and behind TF Serving where it is installed."""
    model, base = exported_model
    if request.param == "stand-in":
        server = DevServer(base, "hierdiffuse", port=0)
        port = server.start()
        yield model, f"127.0.0.1:{port}", base, request.param
        server.stop()
        return
    if shutil.which("tensorflow_model_server") is None:
        pytest.skip("tensorflow_model_server is not on PATH")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = start_tensorflow_model_server(base, port)
    yield model, f"127.0.0.1:{port}", base, request.param
    proc.terminate()
    proc.wait(timeout=30)


CONFIG = HierDiffuseConfig(num_items=50, num_cats=6, max_long=6, num_sessions=2, session_len=3)


def features_of(batch, seed=0):
    x = export.example_request(CONFIG, batch, seed)  # Only the shapes and id ranges matter.
    return {k: x[k] for k in export.MODEL_FEATURES}


def test_grpc_scores_equal_keras_and_repeat_exactly(served):
    model, target, *_ = served
    client = Client(target, "hierdiffuse")
    x = features_of(16, seed=4)
    first = client.predict(x)
    np.testing.assert_allclose(first["ctr"], model(x)["ctr"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(first["ctr"], client.predict(x)["ctr"])
    assert client.status() == [(1, "AVAILABLE")]
    signatures = client.signatures()
    assert {"serving_default", "ddim_5", "rank"} <= set(signatures)
    assert signatures["serving_default"]["inputs"]["short_items"] == [-1, 2, 3]


def test_rank_over_grpc_equals_serving_default_per_candidate(served):
    _, target, *_ = served
    client = Client(target, "hierdiffuse")
    user = {k: v[:1] for k, v in features_of(1, seed=2).items() if not k.startswith("target_")}
    items = np.arange(2, 30, dtype=np.int64)
    cats = (items % 5 + 1).astype(np.int64)
    ranked = client.predict({**user, "candidate_items": items, "candidate_cats": cats}, signature="rank")
    repeated = {k: np.repeat(v, len(items), axis=0) for k, v in user.items()}
    single = client.predict({**repeated, "target_item": items, "target_cat": cats})
    np.testing.assert_allclose(ranked["ctr"], single["ctr"], atol=1e-6)


def code_of(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_bad_requests_get_invalid_argument_naming_the_input(served):
    _, target, *_ = served
    client = Client(target, "hierdiffuse")
    x = features_of(4)
    wrong_dtype = client.request(x)
    wrong_dtype.inputs["target_item"].CopyFrom(tf.make_tensor_proto(x["target_item"].astype(np.float32)))
    string_dtype = client.request(x)
    string_dtype.inputs["long_items"].CopyFrom(tf.make_tensor_proto(np.full((4, 6), "a", dtype=object)))
    cases = {
        "dtype": wrong_dtype,
        "string": string_dtype,
        "rank": client.request({**x, "target_item": x["target_item"].reshape(4, 1)}),
        "shape": client.request({**x, "short_items": np.zeros((4, 3, 3), np.int64)}),
        "missing": client.request({k: v for k, v in x.items() if k != "long_cats"}),
        "unknown": client.request({**x, "coupon": np.zeros(4, np.int64)}),
        "signature": client.request(x, signature="beam_search"),
    }
    expected = {"dtype": "'target_item': expected dtype int64", "string": "'long_items': expected dtype int64",
                "rank": "'target_item': expected shape", "shape": "'short_items': expected shape",
                "missing": "missing inputs ['long_cats']", "unknown": "unknown inputs ['coupon']",
                "signature": "Unknown signature 'beam_search'"}
    for name, request in cases.items():
        code, details = code_of(lambda: client.predictions.Predict(request, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (name, code)
        if served[3] == "stand-in":  # TF Serving words its messages its own way.
            assert expected[name] in details, (name, details)
    code, _ = code_of(lambda: Client(target, "other_model").predict(x))
    assert code == grpc.StatusCode.NOT_FOUND
    assert np.all(np.isfinite(client.predict(x)["ctr"]))  # Still serving after all that.


def test_out_of_range_ids_and_an_empty_batch_are_answered_ok(served):
    model, target, *_ = served
    client = Client(target, "hierdiffuse")
    x = features_of(3)
    x["target_item"] = np.array([-5, 10**12, 2**62], np.int64)  # Negative, past int32, huge.
    x["long_items"][0, :] = -1
    scores = client.predict(x)["ctr"]
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores, model(x)["ctr"].numpy(), atol=1e-6)  # Mapped in the graph.
    empty = client.predict(features_of(0))
    assert empty["ctr"].shape == (0,) and empty["logit"].shape == (0,)


def test_large_requests_are_scored_and_mixed_batch_sizes_are_invalid_arguments(served):
    model, target, *_ = served
    client = Client(target, "hierdiffuse")
    scores = client.predict(features_of(4096))["ctr"]
    assert scores.shape == (4096,) and np.all(np.isfinite(scores))
    big = features_of(20_000)  # Past gRPC's 4 MB default, which TF Serving raises to 2 GB.
    assert client.request(big).ByteSize() > 4 << 20
    np.testing.assert_allclose(client.predict(big)["ctr"][:5], model(big)["ctr"].numpy()[:5], atol=1e-6)
    mixed = {**features_of(4), "target_item": np.ones(3, np.int64)}
    code, details = code_of(lambda: client.predict(mixed))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    if served[3] == "stand-in":
        assert "batch sizes differ" in details and "target_item: 3" in details and "long_items: 4" in details
    assert np.all(np.isfinite(client.predict(features_of(2))["ctr"]))  # Still serving.


@pytest.mark.slow
def test_load_test_has_no_errors(served):
    _, target, *_ = served
    result = load_test(Client(target, "hierdiffuse"), features_of(8), concurrency=8, requests=80,
                       max_seconds=60)
    assert result["errors"] == 0 and result["ok"] == 80 and result["qps"] > 0
    assert result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]


def test_load_test_refuses_non_loopback_targets(capsys):
    require_loopback("127.0.0.1:8500")
    require_loopback("localhost:8500")
    with pytest.raises(ValueError, match="only runs against loopback"):
        require_loopback("10.1.2.3:8500")
    assert cli.main(["loadtest", "--server", "192.168.0.9:8500", "--requests", "1"]) == 2
    assert "loopback" in capsys.readouterr().err


@pytest.mark.slow
def test_loadtest_and_score_commands(served, smoke_builder, data_dir, tmp_path, capsys):
    _, target, *_ = served
    out = tmp_path / "load.json"
    assert cli.main(["loadtest", "--server", target, "--concurrency", "4", "--requests", "20",
                     "--batch-size", "4", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["errors"] == 0
    # `score` needs a model of the dataset's shape: the smoke set has M=12, K=2, N=4.
    capsys.readouterr()
    assert cli.main(["score", "--server", target, "--model-name", "hierdiffuse", "--dataset",
                     SMOKE, "--data-dir", data_dir, "--limit", "10"]) == 2
    assert "INVALID_ARGUMENT" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_dev_stops_cleanly_on_sigterm(exported_model):
    _, base = exported_model
    proc = subprocess.Popen([sys.executable, "-m", "hierdiffuse_tf.cli", "serve-dev", "--model-base-path", base,
                             "--model-name", "hierdiffuse", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        line = ""
        deadline = time.time() + 120
        while "development stand-in" not in line and time.time() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "development stand-in" in line, proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_score_command_matches_keras_on_a_prepared_split(smoke_builder, data_dir, tmp_path, capsys):
    from hierdiffuse_tf.datasets import pipeline

    config = HierDiffuseConfig(**pipeline.vocabulary(smoke_builder), **pipeline.sequence_shape(smoke_builder),
                               embed_dim=8, encoder_ffn_dim=8, denoiser_units=8, time_embed_dim=8)
    model = HierDiffuse(config)
    model(model.example_inputs())
    export.export_saved_model(model, str(tmp_path / "smoke" / "3"), ["user_tokens"])
    server = DevServer(str(tmp_path / "smoke"), "smoke", port=0)
    port = server.start()
    try:
        out = tmp_path / "scores.csv"
        assert cli.main(["score", "--server", f"127.0.0.1:{port}", "--model-name", "smoke", "--dataset",
                         SMOKE, "--data-dir", data_dir, "--limit", "300",
                         "--batch-size", "128", "--out", str(out)]) == 0
    finally:
        server.stop()
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.rindex("\n{\n") + 1:] if "\n{\n" in printed else printed)
    assert summary["examples"] == 300 and summary["p99_ms"] >= summary["p50_ms"] > 0
    rows = np.loadtxt(out, delimiter=",", skiprows=1)
    features, _ = next(iter(pipeline.make_dataset(smoke_builder, "test", 300)))
    np.testing.assert_allclose(rows[:, 2], model(features)["ctr"].numpy(), atol=1e-5)
