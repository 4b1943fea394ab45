"""The Table 1 baselines: each learns the planted signal; DIN, DIEN/AUGRU and Avg-Pooling behave as defined."""

import json
import os

import keras
import numpy as np
import pytest
from keras import ops

from conftest import SMOKE, random_features, tiny_sets
from hierdiffuse_tf import training
from hierdiffuse_tf.models import build_model, get_model_class
from hierdiffuse_tf.models.dien import AUGRUCell
from hierdiffuse_tf.models.din import ActivationUnit
from layer_testing import run_layer_test

BASELINES = ["avg_pool_dnn", "din", "dien", "diffurec", "dreamrec"]
SMALL = dict(num_items=40, num_cats=6, max_long=5, num_sessions=2, session_len=3, embed_dim=8,
             encoder_ffn_dim=16, denoiser_units=16, time_embed_dim=8, head_units=(16,),
             diffusion_steps=20, sampler_steps=4)


@pytest.mark.slow
@pytest.mark.parametrize("name", BASELINES)
def test_baseline_learns_the_planted_signal(name, smoke_builder, data_dir, tmp_path):
    metrics = training.train(name, SMOKE, str(tmp_path), data_dir=data_dir,
                             epochs=3, seed=0, verbose=0,
                             overrides=tiny_sets(name) + ["batch_size=128", "learning_rate=0.003"]
                             + (["sampler_steps=3"] if name in ("diffurec", "dreamrec") else []))
    assert metrics["auc"] > 0.6, (name, metrics["auc"])  # Chance is 0.5.
    assert json.load(open(os.path.join(tmp_path, "config.json")))["model"] == name


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_saves_and_reloads(name, tmp_path):
    model = build_model(name, SMALL, shared=True)
    x = random_features(model.config, 6)
    before = model(x)["ctr"].numpy()
    np.testing.assert_array_equal(before, model(x)["ctr"].numpy())  # Deterministic inference.
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "m.keras")(x)["ctr"].numpy(), before, rtol=1e-6)


def test_augru_with_zero_attention_keeps_its_hidden_state():
    cell = AUGRUCell(4)
    rnn = keras.layers.RNN(cell, return_sequences=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 6)).astype("float32")
    zero_attention = np.concatenate([x, np.zeros((3, 5, 1), "float32")], axis=-1)
    initial = rng.normal(size=(3, 4)).astype("float32")
    states = ops.convert_to_numpy(rnn(zero_attention, initial_state=[initial]))
    for t in range(5):
        np.testing.assert_allclose(states[:, t], initial, rtol=1e-6)
    # With attention 1 it is a GRU step, which moves the state.
    full = np.concatenate([x, np.ones((3, 5, 1), "float32")], axis=-1)
    assert not np.allclose(ops.convert_to_numpy(rnn(full, initial_state=[initial]))[:, 0], initial)
    assert AUGRUCell.from_config(cell.get_config()).units == 4


def test_din_activation_unit_ignores_padding():
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(2, 4, 6)).astype("float32")
    query = rng.normal(size=(2, 6)).astype("float32")
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    pooled, weights = run_layer_test(ActivationUnit, {"units": (8,)},
                                     {"keys": keys, "query": query, "padding_mask": mask}, (2, 6), 5)
    weights = ops.convert_to_numpy(weights)
    assert np.all(weights[0, 2:] == 0)
    np.testing.assert_allclose(ops.convert_to_numpy(pooled)[0], (keys[0, :2] * weights[0, :2, None]).sum(0), rtol=1e-5)
    # `normalize`: the same sum over the count of real behaviours; an empty row stays 0.
    unit = ActivationUnit(units=(8,), normalize=True)
    mask[1] = False
    pooled, weights = (ops.convert_to_numpy(v) for v in unit(keys, query, mask))
    np.testing.assert_allclose(pooled[0], (keys[0, :2] * weights[0, :2, None]).sum(0) / 2, rtol=1e-5)
    assert np.all(pooled[1] == 0) and ActivationUnit.from_config(unit.get_config()).normalize


def test_activation_unit_scores_equal_the_dense_over_the_concatenation():
    rng = np.random.default_rng(1)
    keys = rng.normal(size=(3, 5, 6)).astype("float32")
    query = rng.normal(size=(3, 6)).astype("float32")
    mask = rng.random((3, 5)) < 0.8
    unit = ActivationUnit(units=(7,))
    unit(keys, query, mask)
    kernel, bias = (ops.convert_to_numpy(v) for v in (unit.hidden[0][0].kernel, unit.hidden[0][0].bias))
    q = np.broadcast_to(query[:, None], keys.shape)
    h = np.concatenate([keys, q, keys - q, keys * q], axis=-1) @ kernel + bias  # DIN's definition.
    expected = ops.convert_to_numpy(unit.score(unit.hidden[0][1](h)))[..., 0] * mask
    np.testing.assert_allclose(ops.convert_to_numpy(unit.scores(keys, query, mask)), expected,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("combiner", ["sum", "concat"])
def test_avg_pool_dnn_pools_the_mean_of_real_behaviours(combiner):
    model = build_model("avg_pool_dnn", {**SMALL, "embed_combiner": combiner}, shared=True)
    x = random_features(model.config, 4)
    x["long_items"][0] = 0  # Example 0: no long history.
    model(x)
    items = np.concatenate([x["long_items"], x["short_items"].reshape(4, -1)], axis=1)
    cats = np.concatenate([x["long_cats"], x["short_cats"].reshape(4, -1)], axis=1)
    table_i = ops.convert_to_numpy(model.items.embeddings)
    table_c = ops.convert_to_numpy(model.cats.embeddings)
    mask = items > 0
    joined = (table_i[items] + table_c[cats] if combiner == "sum"
              else np.concatenate([table_i[items], table_c[cats]], axis=-1))
    assert joined.shape[-1] == model.config.embed_dim
    expected = (joined * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    weights = ops.cast(mask, "float32")
    pooled = model.embed(items, cats, weights) / ops.sum(weights, axis=1, keepdims=True)
    np.testing.assert_allclose(ops.convert_to_numpy(pooled), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["diffurec", "dreamrec"])
def test_target_diffusion_recon_is_a_per_dimension_mean_over_clicked_rows(name, monkeypatch):
    model = build_model(name, SMALL, shared=True)
    x = random_features(model.config, 6)
    model(x)
    labels = np.array([1, 0, 1, 1, 0, 1], np.float32)
    # With an x0 prediction of zero, the error is the normalised target's own square.
    monkeypatch.setattr(model, "predict_x0", lambda x_t, t, context, **kwargs: ops.zeros_like(x_t))
    out = model.forward(x, training=True, labels=labels)
    _, _, target = model.sequence(x)
    per_row = np.mean(np.square(ops.convert_to_numpy(model.target_norm(target))), axis=-1)
    expected = per_row[labels == 1].mean()
    np.testing.assert_allclose(float(out.logs["recon"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(out.aux_loss), model.config.recon_weight * expected, rtol=1e-5)


@pytest.mark.parametrize("name", ["avg_pool_dnn", "din"])
def test_a_model_without_its_vocabulary_sizes_is_refused_by_name(name):
    # Avg-Pool's keras-rs tables had no check: one category row, and the OOV id 1 out of range.
    with pytest.raises(ValueError, match=r"`num_cats` must be set \(>= 2\).*`num_cats=1`"):
        build_model(name, {**SMALL, "num_cats": 1}, shared=True)
    with pytest.raises(ValueError, match=r"`num_items` must be set \(>= 3\)"):
        build_model(name, {**SMALL, "num_items": 0}, shared=True)


def test_each_baseline_family_owns_its_fields_and_old_shared_configs_still_load():
    from hierdiffuse_tf.config import SHARED_BASELINE_FIELDS, ConfigError, DINConfig, ModelConfig
    from hierdiffuse_tf.models import MODELS

    own = {name: set(MODELS[name].config_cls.field_names()) - set(ModelConfig.field_names())
           for name in BASELINES}
    assert {k: own[k] for k in ("avg_pool_dnn", "din", "dien")} == {
        "avg_pool_dnn": set(), "din": {"attention_units", "attention_normalize"}, "dien": {"aux_loss_weight"}}
    denoiser_fields = {"denoiser_units", "denoiser_layers", "time_embed_dim", "cfg_scale", "cond_dropout"}
    assert own["diffurec"] - own["dreamrec"] == {"denoiser"}
    assert own["dreamrec"] - own["diffurec"] == denoiser_fields | {"cfg_training"}  # DiffuRec has no guided MLP.
    assert {"recon_weight", "sampler_steps", "diffusion_steps"} <= own["diffurec"] & own["dreamrec"]
    with pytest.raises(ConfigError, match=r"'cfg_scale' for DiffuRecConfig"):
        MODELS["diffurec"].config_cls.from_dict({"num_items": 40, "num_cats": 6, "cfg_scale": 2.0})
    # A DiffuRec saved while its config carried DreamRec's denoiser fields (which it never read).
    diffurec = build_model("diffurec", SMALL, shared=True)
    saved = diffurec.get_config()
    saved["config"].update({"denoiser_units": 64, "denoiser_layers": 3, "time_embed_dim": 16,
                            "cfg_scale": 2.0, "cond_dropout": 0.3})
    assert type(diffurec).from_config(saved).config == diffurec.config
    with pytest.raises(ConfigError, match=r"'sampler_steps' for DINConfig"):
        DINConfig.from_dict({"num_items": 40, "num_cats": 6, "sampler_steps": 3})
    # A DIN saved under the one shared baseline config carried every baseline's fields.
    din = build_model("din", SMALL, shared=True)
    saved = din.get_config()
    saved["config"].update({k: 3 for k in SHARED_BASELINE_FIELDS - {"attention_units"}})
    assert type(din).from_config(saved).config == din.config


def test_dreamrec_fits_the_cfg_mix_or_with_cfg_training_conditional_the_conditional_prediction():
    import dataclasses

    from hierdiffuse_tf.config import ConfigError, DreamRecConfig

    model = build_model("dreamrec", {**SMALL, "cond_dropout": 0.0, "cfg_scale": 2.0}, shared=True)
    model(random_features(model.config, 2))
    rng = np.random.default_rng(0)
    x_t, h_seq = (ops.convert_to_tensor(rng.normal(size=(4, 8)).astype("float32")) for _ in range(2))
    t = ops.full((4,), 7, "int32")
    context = {"h_seq": h_seq, "mask": ops.ones((4, 5), "bool")}
    f_c, f_null = (ops.convert_to_numpy(f) for f in model.guided.denoiser.call_conditions(
        x_t, t, [h_seq, ops.broadcast_to(model.guided.null, (4, 8))], True))
    mix = 3.0 * f_c - 2.0 * f_null  # (1 + w) f(c) - w f(null), w = 2.
    assert model.config.cfg_training == "guided"  # The default, which the tables trained.
    np.testing.assert_allclose(ops.convert_to_numpy(model.fitted_x0(x_t, t, context)), mix, rtol=1e-5, atol=1e-5)
    model.config = dataclasses.replace(model.config, cfg_training="conditional")
    np.testing.assert_allclose(ops.convert_to_numpy(model.fitted_x0(x_t, t, context)), f_c, rtol=1e-5, atol=1e-5)
    # Generation mixes either way: the sampler, and the head's one-step generation in training.
    np.testing.assert_allclose(ops.convert_to_numpy(model.predict_x0(x_t, t, context, training=True)), mix,
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="`cfg_training` must be one of"):
        DreamRecConfig(**SMALL, cfg_training="mixed")


def test_dreamrec_denoiser_depth_is_its_config_field():
    shallow = build_model("dreamrec", {**SMALL, "denoiser_layers": 1}, shared=True)
    deep = build_model("dreamrec", {**SMALL, "denoiser_layers": 3}, shared=True)
    for model in (shallow, deep):
        model(random_features(model.config, 2))
    assert len(deep.trainable_weights) == len(shallow.trainable_weights) + 4  # 2 layers, 2 weights each.


def test_diffurec_cross_attention_denoiser_reads_the_sequence_and_old_configs_keep_theirs():
    from hierdiffuse_tf.config import DiffuRecConfig

    # A DiffuRec saved before the switch had the sequence denoiser, and loads as one.
    assert DiffuRecConfig.from_saved({"num_items": 40, "num_cats": 6}).denoiser == "sequence"
    old = build_model("diffurec", {**SMALL, "denoiser": "sequence"}, shared=True)
    x = random_features(old.config, 4)
    old(x)
    assert type(old).from_config(old.get_config()).config.denoiser == "sequence"
    for dropout in (0.1, 0.0):
        model = build_model("diffurec", {**SMALL, "dropout": dropout}, shared=True)
        assert model.config.denoiser == "cross_attention" and not hasattr(model, "denoiser")
        model(x)
        seq, mask, _ = model.sequence(x)
        mask = np.array(ops.convert_to_numpy(mask))
        mask[0, :3] = False  # Some padding in row 0, and row 1 with no behaviour at all.
        mask[1] = False
        tokens = model.encoder(seq, mask)
        x_t = np.random.default_rng(0).normal(size=(4, model.config.embed_dim)).astype("float32")
        t = ops.full((4,), 5)
        before = ops.convert_to_numpy(model.predict_x0(x_t, t, {"tokens": tokens, "mask": mask}))
        assert np.isfinite(before).all()
        # The prediction depends on the behaviours (through the cross-attention), not only on x_t.
        flipped = {"tokens": ops.flip(tokens, axis=0), "mask": mask[::-1]}
        assert np.abs(before - ops.convert_to_numpy(model.predict_x0(x_t, t, flipped)))[2:].max() > 1e-4
        # Padding is ignored in every row with a behaviour: what a padded token holds changes
        # nothing. (A row with none attends over its padding, which the encoder zeroes.)
        padded = ops.where(ops.expand_dims(mask, -1), tokens, 7.0)
        after = ops.convert_to_numpy(model.predict_x0(x_t, t, {"tokens": padded, "mask": mask}))
        np.testing.assert_allclose(after[[0, 2, 3]], before[[0, 2, 3]], atol=1e-5)


@pytest.mark.parametrize("name", ["dreamrec", "diffurec"])
def test_target_diffusion_encoder_chunk_reaches_the_encoder_and_old_configs_keep_full_attention(name):
    from hierdiffuse_tf.config import ConfigError

    cls = get_model_class(name).config_cls
    assert cls.from_saved({"num_items": 40, "num_cats": 6}).encoder_chunk == 0  # Saved before the field.
    with pytest.raises(ConfigError, match=r"encoder_chunk.*must be >= 0"):
        build_model(name, {**SMALL, "encoder_chunk": -1}, shared=True)
    # A sequence of 5 + 2 x 3 = 11 behaviours in chunks of 4: the last chunk holds 3.
    model = build_model(name, {**SMALL, "encoder_chunk": 4}, shared=True)
    assert model.encoder.chunk_size == 4
    assert np.isfinite(ops.convert_to_numpy(model(random_features(model.config, 3))["ctr"])).all()
    assert type(model).from_config(model.get_config()).config.encoder_chunk == 4


@pytest.mark.parametrize("name", ["dreamrec", "diffurec"])
def test_target_diffusion_attention_dropout_reaches_the_encoder_and_old_configs_keep_it(name):
    from hierdiffuse_tf.config import apply_overrides

    cls = get_model_class(name).config_cls
    assert cls.from_saved({"num_items": 40, "num_cats": 6}).encoder_attention_dropout  # Saved before the field.
    # DiffuRec trains without it by default (the same validation AUC, a cheaper step); DreamRec with it.
    assert cls(num_items=40, num_cats=6).encoder_attention_dropout == (name == "dreamrec")
    values = {}
    apply_overrides(values, {}, cls, ["encoder_attention_dropout=false"])
    model = build_model(name, {**SMALL, **values}, shared=True)
    assert model.encoder.attention_dropout is False
    assert np.isfinite(ops.convert_to_numpy(model(random_features(model.config, 3))["ctr"])).all()
    assert model.encoder.blocks[0]._self_attention_layer.dropout == 0.0
    restored = type(model).from_config(model.get_config())  # Builds its blocks again.
    restored(random_features(restored.config, 3))
    assert restored.config.encoder_attention_dropout is False
    assert restored.encoder.blocks[0]._self_attention_layer.dropout == 0.0


@pytest.mark.slow
def test_every_model_trains_under_a_mixed_bfloat16_policy(tmp_path):
    # The math runs in bfloat16; the diffusion coefficients, the losses and the served
    # scores stay float32 (before 2026-12-07 every diffusion model failed at its first step).
    import tensorflow as tf

    from conftest import small_model
    from hierdiffuse_tf import export
    from hierdiffuse_tf.config import TrainConfig
    from hierdiffuse_tf.models import MODELS

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        for name in MODELS:
            model = small_model(name)
            training.compile_model(model, TrainConfig(batch_size=16))
            x = random_features(model.config, 32)
            history = model.fit(x, np.ones(32, "float32"), batch_size=16, epochs=1, verbose=0).history
            assert np.isfinite(history["loss"][-1]), name
            assert model.compute_dtype == "bfloat16", name
            scores = model.predict(x, verbose=0)
            assert scores["ctr"].dtype == np.float32 and np.isfinite(scores["ctr"]).all(), name
            if name == "hierdiffuse":  # The SavedModel's scoring signatures too (not DDIM's or the tokens').
                loaded = tf.saved_model.load(export.export_saved_model(model, str(tmp_path / "1"), ["rank"]))
                for signature in ("serving_default", "rank"):
                    outputs = loaded.signatures[signature].structured_outputs
                    assert {outputs[k].dtype for k in ("ctr", "logit")} == {tf.float32}, signature
    finally:
        keras.mixed_precision.set_global_policy("float32")
