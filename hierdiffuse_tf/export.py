"""SavedModel export for TF Serving (SPEC 4), with `keras.export.ExportArchive`.

Signatures, all with a dynamic batch dimension and the model's fixed M, K, N:

* `serving_default`: the one-step TCC score. SPEC 1 features in (int64),
  `{"ctr": (B,), "logit": (B,)}` out. eps = 0, so equal requests score equally.
* `ddim_<k>`: the same score through DDIM with k steps (the Table 2d ablation).
* `user_tokens`: the user-side features in, the encoders' tokens and masks out
  (`UserTokens`: `long`, `long_mask`, `long_popular`, `short`, `short_mask`,
  `short_popular`), for caching: no target changes them.
* `rank`: one user's features (batch 1) plus C candidates
  (`candidate_items`, `candidate_cats`, `(C,)`) in, `{"ctr", "logit"}` of
  shape `(C,)` out; the encoders run once per request, and each candidate
  costs the target readouts, the denoiser and the head.

Ids outside the vocabulary map to the OOV id inside the graph. The directory
also gets `assets.extra/tf_serving_warmup_requests` (`PredictionLog` records),
and it loads in a process that imports only TensorFlow.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from hierdiffuse_tf.config import ConfigError
from hierdiffuse_tf.models import HierDiffuse
from hierdiffuse_tf.models.base import MODEL_FEATURES, feature_shapes
from hierdiffuse_tf.models.base import example_features as example_request  # noqa: F401  (public name)

USER_FEATURES = tuple(k for k in MODEL_FEATURES if not k.startswith("target_"))


def input_specs(config, names=MODEL_FEATURES, batch=None) -> dict:
    shapes = feature_shapes(config)
    return {k: tf.TensorSpec((batch,) + shapes[k], tf.int64, name=k) for k in names}


DEFAULT_SIGNATURES = ("ddim_10", "user_tokens", "rank")


def export_saved_model(model: HierDiffuse, path: str, signatures=DEFAULT_SIGNATURES,
                       warmup_batch: int = 4, xla: bool = False) -> str:
    """Writes the SavedModel to `path` (e.g. `BASE/NAME/VERSION`) and returns it.

    `signatures` picks the extra signatures beside `serving_default`:
    `ddim_<k>` (any k), `user_tokens` and `rank`.

    `xla=True` compiles the scoring and user-vector signatures with XLA
    (`jit_compile=True`): faster on CPU (see docs/performance.md), but XLA
    compiles once per distinct batch size, so serve it behind batching with
    fixed `allowed_batch_sizes`, and TF Serving runs it on CPU only with
    `--xla_cpu_compilation_enabled=true`. `rank` stays a plain graph (its
    candidate count varies per request).
    """
    if not isinstance(model, HierDiffuse):
        raise ConfigError(f"Only HierDiffuse exports for serving; got {type(model).__name__}")
    ddim_steps = []
    for name in signatures:
        if name.startswith("ddim_") and name[5:].isdigit() and int(name[5:]) >= 1:
            ddim_steps.append(int(name[5:]))
        elif name not in ("user_tokens", "rank"):
            raise ConfigError(f"Unknown signature {name!r}: use ddim_<k>, user_tokens or rank")
        if name.startswith("ddim_") and int(name[5:]) > model.config.start_step:
            raise ConfigError(f"{name}: DDIM cannot take more steps than t*={model.config.start_step}")
    config = model.config
    compiled = (lambda fn: tf.function(fn, jit_compile=True, autograph=False)) if xla else (lambda fn: fn)
    archive = keras.export.ExportArchive()
    archive.track(model)

    def score(features, sampler=None, steps=None):
        logit = model.score(features, sampler=sampler, steps=steps)
        return {"ctr": tf.sigmoid(logit), "logit": logit}

    archive.add_endpoint("serving_default", compiled(lambda features: score(features, "tcc")),
                         input_signature=[input_specs(config)])
    for k in ddim_steps:
        archive.add_endpoint(f"ddim_{k}", compiled(lambda features, k=k: score(features, "ddim", k)),
                             input_signature=[input_specs(config)])

    def user_tokens(features):  # noqa: E306
        return model.user_side(features)._asdict()

    if "user_tokens" in signatures:
        archive.add_endpoint("user_tokens", compiled(user_tokens),
                             input_signature=[input_specs(config, USER_FEATURES)])

    def rank(features):
        user = {k: features[k] for k in USER_FEATURES}
        tokens = model.user_side(user)  # Batch 1: the encoders run once per request.
        count = tf.shape(features["candidate_items"])[0]
        tiled = type(tokens)(*(tf.repeat(v, count, axis=0) for v in tokens))
        logit = model.score_candidates(tiled, features["candidate_items"], features["candidate_cats"],
                                       sampler="tcc")
        return {"ctr": tf.sigmoid(logit), "logit": logit}

    rank_specs = {**input_specs(config, USER_FEATURES, batch=1),
                  "candidate_items": tf.TensorSpec((None,), tf.int64, name="candidate_items"),
                  "candidate_cats": tf.TensorSpec((None,), tf.int64, name="candidate_cats")}
    if "rank" in signatures:
        archive.add_endpoint("rank", rank, input_signature=[rank_specs])
    archive.write_out(path, verbose=False)
    write_warmup_requests(path, config, warmup_batch, with_user_tokens="user_tokens" in signatures)
    return path


def write_warmup_requests(path: str, config, batch: int, model_name: str = "hierdiffuse",
                          with_user_tokens: bool = True) -> str:
    """`assets.extra/tf_serving_warmup_requests`: one `PredictionLog` per signature."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    target = os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
    features = example_request(config, batch)
    with tf.io.TFRecordWriter(target) as writer:
        requests = [("serving_default", MODEL_FEATURES)]
        if with_user_tokens:
            requests.append(("user_tokens", USER_FEATURES))
        for signature, names in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for name in names:
                request.inputs[name].CopyFrom(tf.make_tensor_proto(features[name]))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return target
