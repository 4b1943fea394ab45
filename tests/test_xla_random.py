"""`xla_random`: Keras' TensorFlow random ops keep plain Keras' numbers outside XLA, and
draw with ThreeFry inside a step that XLA compiles."""

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.tensorflow import random as keras_tf_random

from hierdiffuse_tf import xla_random

SEED = tf.constant([3, 4], tf.int32)


def test_the_package_pins_keras_tensorflow_random_module():
    assert xla_random.pin_algorithms()  # Idempotent: already pinned on import.
    assert isinstance(keras_tf_random.tf, xla_random._Namespace)
    assert keras_tf_random.tf.float32 == tf.float32  # Everything else is TensorFlow's own.
    assert xla_random.current_algorithm() == "philox"


def test_outside_xla_the_numbers_are_plain_tensorflows():
    pinned = keras_tf_random.tf

    @tf.function
    def graph(seed):
        return pinned.random.stateless_normal((64,), seed=seed), tf.random.stateless_normal((64,), seed=seed)

    pairs = [
        (pinned.random.stateless_uniform((5, 7), seed=SEED), tf.random.stateless_uniform((5, 7), seed=SEED)),
        (pinned.random.stateless_normal((5, 7), seed=SEED), tf.random.stateless_normal((5, 7), seed=SEED)),
        (pinned.random.stateless_truncated_normal((9,), seed=SEED),
         tf.random.stateless_truncated_normal((9,), seed=SEED)),
        (pinned.nn.experimental.stateless_dropout(tf.ones((50, 40)), 0.3, seed=SEED),
         tf.nn.experimental.stateless_dropout(tf.ones((50, 40)), 0.3, seed=SEED)),
        graph(SEED),
    ]
    for ours, theirs in pairs:
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_a_keras_dropout_layer_is_unchanged_outside_xla():
    x = tf.ones((64, 32))
    layer = keras.layers.Dropout(0.25, seed=7)
    ours = layer(x, training=True).numpy()
    seed = keras.random.SeedGenerator(7)  # The layer's generator, drawn once from its start.
    theirs = tf.nn.experimental.stateless_dropout(
        x, 0.25, seed=keras_tf_random._cast_seed(keras.src.random.seed_generator.draw_seed(seed)))
    np.testing.assert_array_equal(ours, theirs.numpy())


def test_inside_a_step_xla_compiles_the_draws_are_threefrys():
    pinned = keras_tf_random.tf

    def ours(seed):
        with xla_random.inside_xla():
            return pinned.random.stateless_uniform((1000,), seed=seed)

    xla = tf.function(ours, jit_compile=True)(SEED).numpy()
    threefry = tf.function(lambda s: tf.random.stateless_uniform((1000,), seed=s, alg="threefry"),
                           jit_compile=True)(SEED).numpy()
    np.testing.assert_array_equal(xla, threefry)
    assert 0.45 < xla.mean() < 0.55 and xla.min() >= 0.0 and xla.max() < 1.0
    assert xla_random.current_algorithm() == "philox"  # The context ends with the trace.


def test_inside_xla_can_be_switched_off_and_nests():
    with xla_random.inside_xla():
        assert xla_random.current_algorithm() == "threefry"
        with xla_random.inside_xla(False):
            assert xla_random.current_algorithm() == "philox"
        assert xla_random.current_algorithm() == "threefry"
    assert xla_random.current_algorithm() == "philox"


def test_the_train_step_draws_with_threefry_exactly_when_xla_compiles_it(monkeypatch):
    from conftest import random_features
    from conftest import small_model

    seen = []
    real = xla_random.current_algorithm
    monkeypatch.setattr(xla_random, "current_algorithm", lambda: seen.append(real()) or seen[-1])
    x = random_features(small_model("din").config, 16)
    y = np.zeros(16, "float32")
    for jit in (False, True):
        model = small_model("din", dropout=0.5)
        model(x)  # The initialisers draw here, outside any step.
        model.compile(optimizer="sgd", jit_compile=jit)
        seen.clear()
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert seen and set(seen) == {"threefry" if jit else "philox"}
