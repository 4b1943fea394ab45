"""The serving SavedModel: signatures, determinism, OOV safety, `rank`, and a TF-only process."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from hierdiffuse_tf import cli, export
from hierdiffuse_tf.config import ConfigError, DINConfig, HierDiffuseConfig
from hierdiffuse_tf.models import DIN, HierDiffuse


@pytest.fixture(scope="module")
def exported(exported_model):
    model, base = exported_model
    return model, os.path.join(base, "1")


def call(signature, features):
    return {k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in features.items()}).items()}


def test_serving_default_matches_keras_and_is_deterministic(exported):
    model, path = exported
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "ddim_5", "user_tokens", "rank"}
    x = export.example_request(model.config, 7, seed=3)
    features = {k: x[k] for k in export.MODEL_FEATURES}
    first = call(loaded.signatures["serving_default"], features)
    np.testing.assert_allclose(first["ctr"], model(x)["ctr"].numpy(), atol=1e-6)
    np.testing.assert_array_equal(first["ctr"], call(loaded.signatures["serving_default"], features)["ctr"])
    ddim = call(loaded.signatures["ddim_5"], features)
    expected = tf.sigmoid(model.score(x, sampler="ddim", steps=5)).numpy()
    np.testing.assert_allclose(ddim["ctr"], expected, atol=1e-6)


def test_out_of_vocabulary_ids_are_safe(exported):
    model, path = exported
    x = export.example_request(model.config, 3)
    x["target_item"][:] = 10**12
    x["long_items"][0, :] = 999
    out = call(tf.saved_model.load(path).signatures["serving_default"], {k: x[k] for k in export.MODEL_FEATURES})
    assert np.all(np.isfinite(out["ctr"]))
    oov = dict(x, target_item=np.ones(3, np.int64), long_items=np.where(x["long_items"] >= 50, 1, x["long_items"]))
    np.testing.assert_allclose(out["ctr"], model(oov)["ctr"].numpy(), atol=1e-6)


def test_rank_equals_serving_default_once_per_candidate(exported):
    model, path = exported
    loaded = tf.saved_model.load(path)
    x = export.example_request(model.config, 1, seed=9)
    candidates = np.arange(2, 42, dtype=np.int64)
    cats = (candidates % 5 + 1).astype(np.int64)
    ranked = call(loaded.signatures["rank"], {**{k: x[k] for k in export.USER_FEATURES},
                                               "candidate_items": candidates, "candidate_cats": cats})
    batch = {k: np.repeat(x[k], len(candidates), axis=0) for k in export.USER_FEATURES}
    single = call(loaded.signatures["serving_default"], {**batch, "target_item": candidates, "target_cat": cats})
    assert ranked["ctr"].shape == (40,)
    np.testing.assert_allclose(ranked["ctr"], single["ctr"], atol=1e-6)
    tokens = call(loaded.signatures["user_tokens"], {k: x[k] for k in export.USER_FEATURES})
    assert tokens["long"].shape == (1, 6, 8) and tokens["short"].shape == (1, 2, 3, 8)
    assert tokens["long_mask"].dtype == bool


@pytest.mark.slow
def test_saved_model_runs_in_a_process_that_imports_only_tensorflow(exported):
    model, path = exported
    x = export.example_request(model.config, 4, seed=1)
    np.savez(os.path.join(os.path.dirname(path), "x.npz"), **x)
    script = f"""
import json, sys, numpy as np, tensorflow as tf
x = dict(np.load({os.path.join(os.path.dirname(path), 'x.npz')!r}))
sig = tf.saved_model.load({path!r}).signatures["serving_default"]
out = sig(**{{k: tf.constant(v) for k, v in x.items()}})
assert not any(m.startswith(("hierdiffuse_tf", "keras_hub", "keras_rs")) for m in sys.modules), "project code imported"
print(json.dumps(out["ctr"].numpy().tolist()))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(scores, model(x)["ctr"].numpy(), atol=1e-6)


def test_warmup_requests_are_prediction_logs_that_each_signature_serves(exported):
    # One request per signature, as TF Serving replays them at load: each must run.
    from tensorflow_serving.apis import prediction_log_pb2

    _, path = exported
    records = list(tf.data.TFRecordDataset(os.path.join(path, "assets.extra", "tf_serving_warmup_requests")))
    requests = [prediction_log_pb2.PredictionLog.FromString(r.numpy()).predict_log.request for r in records]
    names = [request.model_spec.signature_name for request in requests]
    assert names == ["serving_default", "ddim_5", "user_tokens", "rank"]
    assert set(requests[0].inputs) == set(export.MODEL_FEATURES)
    loaded = tf.saved_model.load(path)
    for name, request in zip(names, requests):
        out = call(loaded.signatures[name], {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
        assert all(np.isfinite(v).all() for v in out.values()), name
    assert out["ctr"].shape == (4,)  # `rank`: one user, the warmup batch's 4 candidates.


def test_export_replaces_a_version_whole_and_a_failed_one_leaves_it(tmp_path, monkeypatch):
    # DIN's export (one signature) is the cheap one; every model's export writes the same way.
    din = DIN(DINConfig(num_items=50, num_cats=6, max_long=6, num_sessions=2, session_len=3))
    din(export.example_request(din.config, 2))
    version = tmp_path / "din" / "1"
    export.export_saved_model(din, str(version))
    (version / "stray_file").write_text("from the export before")
    export.export_saved_model(din, str(version))  # Over the first: replaced whole, not merged.
    assert sorted(os.listdir(version)) == ["assets", "assets.extra", "fingerprint.pb", "saved_model.pb",
                                           "variables"]
    assert os.listdir(version.parent) == ["1"]  # No staging or set-aside folder is left.

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    (version / "stray_file").write_text("the version being served")
    monkeypatch.setattr(export, "write_warmup_requests", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(din, str(version))
    assert (version / "stray_file").read_text() == "the version being served"  # Left as it was.
    assert os.listdir(version.parent) == ["1"]


def test_export_errors_are_clear(exported, tmp_path):
    din = DIN(DINConfig(num_items=50, num_cats=6, max_long=6, num_sessions=2, session_len=3))
    din(export.example_request(din.config, 2))
    with pytest.raises(ConfigError, match=r"DIN exports serving_default only; \['rank'\]"):
        export.export_saved_model(din, str(tmp_path / "x"), ["rank"])
    model = HierDiffuse(exported[0].config)
    with pytest.raises(ConfigError, match="Unknown signature 'beam'"):
        export.export_saved_model(model, str(tmp_path / "y"), ["beam"])
    assert cli.main(["export", "--model-dir", str(tmp_path), "--out", str(tmp_path / "z")]) == 2


@pytest.mark.slow
def test_xla_export_scores_like_the_plain_graph(exported, tmp_path):
    model, plain_path = exported
    path = export.export_saved_model(model, str(tmp_path / "1"), ["ddim_5", "user_tokens"], xla=True)
    plain, compiled = tf.saved_model.load(plain_path), tf.saved_model.load(path)
    x = export.example_request(model.config, 6, seed=5)
    features = {k: x[k] for k in export.MODEL_FEATURES}
    for name in ("serving_default", "ddim_5"):
        fast = call(compiled.signatures[name], features)
        np.testing.assert_allclose(fast["ctr"], call(plain.signatures[name], features)["ctr"], atol=1e-5)
        np.testing.assert_array_equal(fast["ctr"], call(compiled.signatures[name], features)["ctr"])
    # The XLA-compiled function is what the signature runs.
    graph = compiled.signatures["serving_default"].graph.as_graph_def()
    assert any(f.attr["_XlaMustCompile"].b for f in graph.library.function)


HierDiffuseConfigForShapes = HierDiffuseConfig(num_items=50, num_cats=6, max_long=6, num_sessions=2,
                                               session_len=3)
# Every model in the registry exports, and its SavedModel scores as Keras does in a process
# that imports only TensorFlow (TF Serving runs no project Python).
TF_ONLY = """
import json, sys, numpy as np, tensorflow as tf
x = dict(np.load(sys.argv[1]))
out = {}
for name, path in json.loads(sys.argv[2]).items():
    sig = tf.saved_model.load(path).signatures["serving_default"]
    out[name] = sig(**{k: tf.constant(v) for k, v in x.items()})["ctr"].numpy().tolist()
assert not any(m.startswith(("hierdiffuse_tf", "keras_hub", "keras_rs")) for m in sys.modules), "project code"
print(json.dumps(out))
"""


@pytest.mark.slow
def test_every_model_exports_through_the_cli_and_scores_in_a_tensorflow_only_process(tmp_path):
    from conftest import small_model
    from hierdiffuse_tf.models import MODELS
    x = export.example_request(HierDiffuseConfigForShapes, 5, seed=2)
    features = {k: x[k] for k in export.MODEL_FEATURES}
    paths, expected = {}, {}
    for name in MODELS:
        model = small_model(name, num_items=50, encoder_ffn_dim=8, denoiser_units=8, head_units=(8,))
        expected[name] = model(features)["ctr"].numpy()
        run = tmp_path / name
        run.mkdir()
        model.save(run / "model.keras")  # What `export --model-dir` reads.
        paths[name] = str(tmp_path / "models" / name / "1")
        assert cli.main(["export", "--model-dir", str(run), "--out", paths[name]]) == 0
        signatures = set(export.signature_names(paths[name]))
        assert signatures == ({"serving_default", "ddim_10", "user_tokens", "rank"}
                              if name == "hierdiffuse" else {"serving_default"}), (name, signatures)
    np.savez(tmp_path / "x.npz", **features)
    result = subprocess.run([sys.executable, "-c", TF_ONLY, str(tmp_path / "x.npz"), json.dumps(paths)],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    for name in MODELS:
        np.testing.assert_allclose(scores[name], expected[name], atol=1e-5, err_msg=name)
