"""XLA where it is faster: every model scores under XLA within 1e-5 of the plain graph on the
same weights, and the models that train under XLA take the same first step as without it."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from conftest import random_features
from conftest import small_model as small
from hierdiffuse_tf import training
from hierdiffuse_tf.models import MODELS


@pytest.mark.parametrize("name", sorted(MODELS))
def test_xla_scores_equal_the_plain_graph(name):
    model = small(name)
    x = {k: tf.constant(v) for k, v in random_features(model.config, 16).items()}
    model(x)
    assert model.jit_predict  # Measured faster for every model (docs/performance.md).
    xla = training.compiled_scorer(model, jit_compile=True)(x).numpy()
    plain = training.compiled_scorer(model, jit_compile=False)(x).numpy()
    np.testing.assert_allclose(xla, plain, atol=1e-5)


@pytest.fixture
def fixed_draws(monkeypatch):
    """`keras.random.normal` and `uniform` as fixed patterns of their shape.

    The models' own draws (the diffusion noise and steps, SGD's condition dropout) go
    through these, so with dropout off a step is then the same function of the weights
    under XLA and without it, whose random streams differ (ThreeFry and Philox).
    """
    def pattern(shape, dtype):
        size = int(np.prod(shape))
        return ops.reshape(ops.sin(1.7 * ops.cast(ops.arange(size), dtype or "float32")), shape)

    monkeypatch.setattr(keras.random, "normal", lambda shape, mean=0.0, stddev=1.0, dtype=None, seed=None:
                        mean + stddev * pattern(shape, dtype))
    monkeypatch.setattr(keras.random, "uniform", lambda shape, minval=0.0, maxval=1.0, dtype=None, seed=None:
                        minval + (maxval - minval) * (0.5 + 0.49 * pattern(shape, dtype)))


@pytest.mark.parametrize("name", [n for n in sorted(MODELS) if MODELS[n].jit_train])
def test_a_model_that_trains_under_xla_takes_the_same_step_as_without(name, fixed_draws):
    x = random_features(small(name).config, 32)
    y = np.random.default_rng(0).integers(0, 2, 32).astype("float32")
    weights = {}
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = small(name, dropout=0.0)  # XLA draws other dropout masks (ThreeFry) from the same seed.
        model(x)
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit)
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
        weights[jit] = model.get_weights()
    for plain, xla in zip(weights[False], weights[True]):
        np.testing.assert_allclose(xla, plain, atol=1e-5)


@pytest.mark.slow
def test_f_s_over_the_non_empty_sessions_trains_under_xla_as_over_all(fixed_draws):
    """`skip_empty_sessions` takes the step of the full block, under XLA as well: its `cond`'s
    gradient compiles once the training batch has a static size (`drop_remainder`). With
    a short last batch the encoder runs over every row, and XLA compiles that too."""
    x = random_features(small("hierdiffuse").config, 32)
    keep = np.random.default_rng(1).random(x["short_items"].shape[:2]) < 0.4  # ml-100k's share.
    for key in ("short_items", "short_cats", "short_popular"):
        x[key] = x[key] * keep[..., None]
    y = np.random.default_rng(0).integers(0, 2, 32).astype("float32")
    static = tf.data.Dataset.from_tensor_slices((x, y)).batch(16, drop_remainder=True)
    weights = {}
    for skip, jit in ((False, False), (True, True)):
        keras.utils.set_random_seed(0)
        model = small("hierdiffuse", dropout=0.0, skip_empty_sessions=skip)
        model(x)
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit)
        model.fit(static, epochs=1, verbose=0)
        weights[skip, jit] = model.get_weights()
    for plain, skipping in zip(weights[False, False], weights[True, True]):
        np.testing.assert_allclose(skipping, plain, atol=1e-5)


@pytest.mark.slow
def test_f_s_skip_falls_back_to_every_session_when_the_batch_size_is_not_static():
    # A notebook's `fit` on batches with a short last one: no static size, so no skip, and it compiles.
    model = small("hierdiffuse")
    x = random_features(model.config, 32)
    y = np.random.default_rng(0).integers(0, 2, 32).astype("float32")
    model(x)
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=True)
    ragged = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)  # Its size unknown when traced.
    assert ragged.element_spec[1].shape[0] is None
    history = model.fit(ragged, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_fit_compiles_with_xla_where_it_measured_faster_unless_asked_not_to(monkeypatch):
    monkeypatch.delenv(training.XLA_TRAINING_ENV, raising=False)
    assert {n for n in MODELS if training.xla_training(MODELS[n])} == {
        "avg_pool_dnn", "din", "diffurec", "dreamrec", "hierdiffuse"}  # Not DIEN (its GRUs).
    assert not training.xla_training(MODELS["hierdiffuse"], "mirrored")  # One device only.
    monkeypatch.setenv(training.XLA_TRAINING_ENV, "0")
    assert not any(training.xla_training(cls) for cls in MODELS.values())


def test_scoring_compiles_with_xla_unless_asked_not_to(monkeypatch):
    model = small("din")
    monkeypatch.delenv(training.XLA_SCORING_ENV, raising=False)
    assert all(training.xla_scoring(cls) for cls in MODELS.values())  # jit_predict, every model.
    # `tf.function` keeps its compile choice in `_jit_compile` only.
    assert training.compiled_scorer(model)._jit_compile
    monkeypatch.setenv(training.XLA_SCORING_ENV, "0")
    assert not any(training.xla_scoring(cls) for cls in MODELS.values())
    assert not training.compiled_scorer(model)._jit_compile
    assert training.compiled_scorer(model, jit_compile=True)._jit_compile  # Asked for: XLA still.
