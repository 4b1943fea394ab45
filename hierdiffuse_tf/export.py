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
also gets `assets.extra/tf_serving_warmup_requests` (one `PredictionLog` per
signature), and it loads in a process that imports only TensorFlow. It is
written whole or not at all: into a sibling folder first, then renamed to the
version folder, so TF Serving, which polls the model's folder, never loads a
version that is half written or lacks its warmup file.
"""

from __future__ import annotations

import os
import shutil

import keras
import tensorflow as tf

from hierdiffuse_tf.config import ConfigError
from hierdiffuse_tf.models import CTRModel, HierDiffuse
from hierdiffuse_tf.models.base import MODEL_FEATURES, feature_shapes
from hierdiffuse_tf.models.base import example_features as example_request  # noqa: F401  (public name)

USER_FEATURES = tuple(k for k in MODEL_FEATURES if not k.startswith("target_"))


def input_specs(config, names=MODEL_FEATURES, batch=None) -> dict:
    shapes = feature_shapes(config)
    return {k: tf.TensorSpec((batch,) + shapes[k], tf.int64, name=k) for k in names}


DEFAULT_SIGNATURES = ("ddim_10", "user_tokens", "rank")


def export_saved_model(model: CTRModel, path: str, signatures=None,
                       warmup_batch: int = 4, xla: bool = False) -> str:
    """Writes the SavedModel to `path` (e.g. `BASE/NAME/VERSION`) and returns it.

    Every model in the registry exports `serving_default`; the other models than
    HierDiffuse export only that (`export_scorer`).

    `signatures` picks HierDiffuse's extra signatures beside `serving_default`:
    `ddim_<k>` (any k), `user_tokens` and `rank` (None: `DEFAULT_SIGNATURES`).

    `xla=True` compiles the scoring and user-vector signatures with XLA
    (`jit_compile=True`): faster on CPU (see docs/performance.md), but XLA
    compiles once per distinct batch size, so serve it behind batching with
    fixed `allowed_batch_sizes`, and TF Serving runs it on CPU only with
    `--xla_cpu_compilation_enabled=true`. `rank` stays a plain graph (its
    candidate count varies per request).
    """
    if not isinstance(model, HierDiffuse):
        return export_scorer(model, path, signatures or (), warmup_batch, xla)
    signatures = DEFAULT_SIGNATURES if signatures is None else signatures
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
        return model.outputs_of(model.score(features, sampler=sampler, steps=steps))

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
        return model.outputs_of(model.score_candidates(tokens, features["candidate_items"],
                                                       features["candidate_cats"], sampler="tcc"))

    rank_specs = {**input_specs(config, USER_FEATURES, batch=1),
                  "candidate_items": tf.TensorSpec((None,), tf.int64, name="candidate_items"),
                  "candidate_cats": tf.TensorSpec((None,), tf.int64, name="candidate_cats")}
    if "rank" in signatures:
        archive.add_endpoint("rank", rank, input_signature=[rank_specs])
    return _write_whole(archive, path, config, warmup_batch, ["serving_default", *signatures])


def export_scorer(model: CTRModel, path: str, signatures=(), warmup_batch: int = 4,
                  xla: bool = False) -> str:
    """The SavedModel of a model without a user side to split off (the Table 1 baselines):
    `serving_default` only, `{"ctr", "logit"}` from the SPEC 1 features.

    Any other signature asked for is refused by name: `ddim_<k>`, `user_tokens` and
    `rank` need a model that splits the user side from the candidate (HierDiffuse).
    """
    if signatures:
        raise ConfigError(f"{type(model).__name__} exports serving_default only; {list(signatures)} "
                          "need a model that splits the user side from the candidate (HierDiffuse)")
    archive = keras.export.ExportArchive()
    archive.track(model)

    def score(features):
        out = model(features, training=False)
        return {"ctr": out["ctr"], "logit": out["logit"]}

    fn = tf.function(score, jit_compile=True, autograph=False) if xla else score
    archive.add_endpoint("serving_default", fn, input_signature=[input_specs(model.config)])
    return _write_whole(archive, path, model.config, warmup_batch, ["serving_default"])


def signature_names(path: str) -> list[str]:
    """The signatures a written SavedModel serves, read from its `saved_model.pb`."""
    from tensorflow.core.protobuf import saved_model_pb2

    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto = saved_model_pb2.SavedModel.FromString(f.read())
    return sorted(k for k in proto.meta_graphs[0].signature_def if not k.startswith("__"))


def _write_whole(archive, path: str, config, warmup_batch: int, signatures) -> str:
    """Writes `archive` and its warmup requests to `path`, whole or not at all.

    Both go to a sibling folder first, `PATH.<pid>.tmp` (TF Serving takes only numbers
    for versions, so it never loads it), which is then renamed to `path`. A version
    already at `path` is renamed aside first and removed after: the two renames
    leave `path` missing for microseconds, never half written. A failed write
    removes its sibling folder and leaves `path` as it was.
    """
    target = os.path.normpath(path)
    staging, aside = f"{target}.{os.getpid()}.tmp", f"{target}.{os.getpid()}.old"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        archive.write_out(staging, verbose=False)
        write_warmup_requests(staging, config, warmup_batch, signatures)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replaced = os.path.exists(target)
    if replaced:
        os.replace(target, aside)
    os.replace(staging, target)
    if replaced:
        shutil.rmtree(aside, ignore_errors=True)
    return path


def write_warmup_requests(path: str, config, batch: int, signatures=("serving_default",)) -> str:
    """`assets.extra/tf_serving_warmup_requests`: one `PredictionLog` per signature, so
    TF Serving traces (or, under `--xla`, compiles) each before the first live request.

    `serving_default` and `ddim_<k>` get `batch` rows of the model's features,
    `user_tokens` `batch` rows of the user's, and `rank` one user with `batch`
    candidates.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    target = os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
    features = example_request(config, batch)
    rank = {**{k: features[k][:1] for k in USER_FEATURES},
            "candidate_items": features["target_item"], "candidate_cats": features["target_cat"]}
    inputs = {"user_tokens": {k: features[k] for k in USER_FEATURES}, "rank": rank}
    with tf.io.TFRecordWriter(target) as writer:
        for signature in signatures:
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name=signature))
            for name, value in inputs.get(signature, {k: features[k] for k in MODEL_FEATURES}).items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return target
