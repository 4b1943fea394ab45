"""SGD (Eq. 6), standard CFG and condition handling."""

import numpy as np
import pytest
from keras import ops

from hierdiffuse_tf.diffusion.denoiser import MLPDenoiser
from hierdiffuse_tf.guidance import GuidedDenoiser, cfg_combine, semantic_groups, sgd_combine
from layer_testing import run_layer_test

rng = np.random.default_rng(0)
X = rng.normal(size=(4, 6)).astype("float32")
T = np.array([5, 10, 20, 40])
CONDS = rng.normal(size=(4, 2, 6)).astype("float32")
SHARES = np.array([[0.5, 0.5], [1.0, 0.0], [0.25, 0.75], [0.0, 1.0]], "float32")
PRESENT = np.array([[True, True], [True, False], [True, True], [False, True]])


def denoiser():
    return MLPDenoiser(16, 2, 8, name="denoiser")


def unconditional(layer):
    null = np.broadcast_to(ops.convert_to_numpy(layer.null), (4, 6))
    return ops.convert_to_numpy(layer.denoiser(X, T, null))


def test_sgd_combine_is_eq_6():
    f0, f1, f2 = (np.full((2, 3), v, "float32") for v in (1.0, 2.0, 3.0))
    w1, w2 = np.array([[0.2], [0.0]]), np.array([[0.3], [0.0]])
    out = ops.convert_to_numpy(sgd_combine(f0, f1, f2, w1, w2))
    np.testing.assert_allclose(out[0], 0.5 * 1 + 0.2 * 2 + 0.3 * 3)
    np.testing.assert_allclose(out[1], 1.0)  # w1 = w2 = 0: the unconditional prediction.
    np.testing.assert_allclose(ops.convert_to_numpy(cfg_combine(f1, f0, 2.0)), 3 * 2.0 - 2 * 1.0)


def test_sgd_with_zero_weights_equals_the_unconditional_prediction():
    layer = GuidedDenoiser(denoiser(), mode="sgd", sgd_weights="fixed", sgd_fixed_w=(0.0, 0.0))
    out = ops.convert_to_numpy(layer(X, T, CONDS, SHARES, PRESENT))
    np.testing.assert_allclose(out, unconditional(layer), rtol=1e-5, atol=1e-6)


def test_absent_conditions_act_as_null():
    layer = GuidedDenoiser(denoiser(), mode="none")
    out = ops.convert_to_numpy(layer(X, T, CONDS[:, :1], SHARES[:, :1], np.zeros((4, 1), bool)))
    np.testing.assert_allclose(out, unconditional(layer), rtol=1e-5, atol=1e-6)
    # CFG with w = 0 is the plain conditional prediction.
    cfg = GuidedDenoiser(denoiser(), mode="cfg", cfg_scale=0.0)
    plain = ops.convert_to_numpy(cfg(X, T, CONDS[:, :1], SHARES[:, :1], np.ones((4, 1), bool)))
    np.testing.assert_allclose(plain, ops.convert_to_numpy(cfg.denoiser(X, T, CONDS[:, 0])), rtol=1e-5, atol=1e-6)


def test_condition_dropout_only_in_training():
    layer = GuidedDenoiser(denoiser(), mode="none", cond_dropout=0.5, seed=1)
    conds = np.repeat(CONDS[:1, :1], 256, axis=0)
    x, t = np.repeat(X[:1], 256, axis=0), np.repeat(T[:1], 256)
    present = np.ones((256, 1), bool)
    layer(x, t, conds, SHARES[:1, :1].repeat(256, 0), present)
    layer.null.assign(np.full((6,), 3.0, "float32"))
    inference = ops.convert_to_numpy(layer(x, t, conds, None, present, training=False))
    assert np.allclose(inference, inference[0])  # No condition dropped.
    trained = ops.convert_to_numpy(layer(x, t, conds, None, present, training=True))
    dropped = ~np.isclose(trained, inference[0]).all(axis=1)
    assert 0.35 < dropped.mean() < 0.65


def test_semantic_groups_split_niche_and_trend_clicks():
    tokens = np.arange(2 * 4 * 3, dtype="float32").reshape(2, 4, 3)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    popular = np.array([[0, 1, 1, 1], [0, 0, 0, 0]])
    conds, shares, present = (ops.convert_to_numpy(v) for v in semantic_groups(tokens, mask, popular))
    np.testing.assert_allclose(conds[0, 0], tokens[0, 0])
    np.testing.assert_allclose(conds[0, 1], tokens[0, 1:3].mean(0))
    np.testing.assert_allclose(shares, [[1 / 3, 2 / 3], [1.0, 0.0]], rtol=1e-6)
    np.testing.assert_array_equal(present, [[True, True], [True, False]])


@pytest.mark.parametrize("mode,groups,weights", [("sgd", 2, 10 + 1 + 4), ("cfg", 1, 11), ("none", 1, 11)])
def test_guided_denoiser_layer(mode, groups, weights):
    inputs = {"x_t": X, "t": T, "conds": CONDS[:, :groups], "shares": SHARES[:, :groups],
              "present": PRESENT[:, :groups]}
    run_layer_test(GuidedDenoiser, {"denoiser": denoiser(), "mode": mode}, inputs, (4, 6), weights,
                   fit=False)
