"""The cosine schedule (Eq. 10-11), TCC (Eq. 7-8), its curricula, and the denoisers."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from hierdiffuse_tf.diffusion import samplers, tcc
from hierdiffuse_tf.diffusion.denoiser import MLPDenoiser, TimeEmbedding, TransformerDenoiser
from hierdiffuse_tf.diffusion.schedule import CosineSchedule, cosine_alpha_bar
from layer_testing import run_layer_test


def hand_alpha_bar(t, T, s=0.008):
    """Eq. 10, written out by hand."""
    f = lambda u: math.cos(math.pi / 2 * (u / T + s) / (1 + s))  # noqa: E731
    return f(t) / f(0)


@pytest.mark.parametrize("T", [10, 100])
def test_schedule_matches_eq_10_and_11(T):
    table = cosine_alpha_bar(T)
    # Below the clip, the product of (1 - beta_t) telescopes back to Eq. 10.
    for t in range(0, T):
        assert table[t] == pytest.approx(hand_alpha_bar(t, T), rel=1e-9, abs=1e-12)
    # Eq. 11: beta_t = 1 - ab_t / ab_{t-1}, clipped at 0.999 (only the last step hits it).
    betas = 1 - table[1:] / table[:-1]
    hand_betas = [min(1 - hand_alpha_bar(t, T) / hand_alpha_bar(t - 1, T), 0.999) for t in range(1, T + 1)]
    np.testing.assert_allclose(betas, hand_betas, rtol=1e-9, atol=1e-12)
    assert betas.max() <= 0.999 + 1e-12
    assert np.all(np.diff(table) < 0) and table[0] == 1.0


def test_schedule_layer_and_forward_process():
    schedule = CosineSchedule(100)
    t = np.array([0, 10, 50, 100])
    np.testing.assert_allclose(ops.convert_to_numpy(schedule(t)), cosine_alpha_bar(100)[t], rtol=1e-6)
    x0, eps = np.ones((4, 3), "float32"), np.full((4, 3), 2.0, "float32")
    ab = cosine_alpha_bar(100)[t][:, None]
    expected = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps
    np.testing.assert_allclose(ops.convert_to_numpy(schedule.q_sample(x0, t, eps)), expected, rtol=1e-5)
    # x0 -> eps inverts the forward process.
    x_t = schedule.q_sample(x0[1:], t[1:], eps[1:])
    np.testing.assert_allclose(ops.convert_to_numpy(schedule.x0_to_eps(x_t, t[1:], x0[1:])), eps[1:], rtol=1e-4)
    assert CosineSchedule.from_config(schedule.get_config()).alpha_bar_table.tolist() == schedule.alpha_bar_table.tolist()
    with pytest.raises(ValueError, match="num_steps"):
        CosineSchedule(1)


def test_tcc_losses_are_zero_for_a_mapping_that_returns_x0():
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(16, 8)).astype("float32")
    t_prev = rng.integers(-5, 50, size=(16,))
    recon, trajectory = tcc.tcc_losses(pred_t=x0, pred_prev=x0, x0=x0, t_prev=t_prev)
    assert float(recon) == 0.0 and float(trajectory) == 0.0
    # And they are the squared distances otherwise.
    recon, trajectory = tcc.tcc_losses(x0 + 1.0, x0 - 1.0, x0, np.full((16,), 3), reduction="sum")
    assert float(recon) == pytest.approx(8.0) and float(trajectory) == pytest.approx(32.0)
    # The default averages over d: the same errors, d = 8 times smaller.
    recon, trajectory = tcc.tcc_losses(x0 + 1.0, x0 - 1.0, x0, np.full((16,), 3))
    assert float(recon) == pytest.approx(1.0) and float(trajectory) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="reduction"):
        tcc.tcc_losses(x0, x0, x0, t_prev, reduction="max")
    # A span that reaches step 0 targets x0 itself (the boundary condition).
    _, trajectory = tcc.tcc_losses(x0, x0 + 5.0, x0, np.zeros((16,), "int32"))
    assert float(trajectory) == 0.0


def test_curriculum_small_spans_early_then_medium_and_lambda_reaches_0_2():
    T, steps = 100, 1000
    seed = keras.random.SeedGenerator(0)
    early = ops.convert_to_numpy(tcc.curriculum_dt(0, 4096, steps, T, seed, switch=0.3))
    assert early.min() >= 1 and early.max() <= 0.1 * T
    assert len(np.unique(early)) == 10  # The whole small range is used.
    late = ops.convert_to_numpy(tcc.curriculum_dt(900, 4096, steps, T, seed, switch=0.3))
    assert late.min() >= 0.1 * T and late.max() <= 0.5 * T
    assert float(tcc.lambda_schedule(0, steps)) == pytest.approx(1.0)
    assert float(tcc.lambda_schedule(steps // 2, steps)) == pytest.approx(0.6)
    assert float(tcc.lambda_schedule(steps, steps)) == pytest.approx(0.2)
    assert float(tcc.lambda_schedule(10 * steps, steps)) == pytest.approx(0.2)


def oracle(x0):
    return lambda x_t, t: ops.convert_to_tensor(x0)


def test_every_sampler_returns_x0_for_an_oracle_denoiser():
    schedule = CosineSchedule(100)
    rng = np.random.default_rng(1)
    x0 = rng.normal(size=(4, 6)).astype("float32")
    x_start = schedule.q_sample(x0, np.full((4,), 50), rng.normal(size=(4, 6)).astype("float32"))
    noise = lambda shape: keras.random.normal(shape, seed=3)  # noqa: E731
    for out in (samplers.tcc_sample(oracle(x0), x_start, 50),
                samplers.ddim_sample(oracle(x0), x_start, 50, 10, schedule),
                samplers.ddpm_sample(oracle(x0), x_start, 50, schedule),
                samplers.ddpm_sample(oracle(x0), x_start, 50, schedule, noise_fn=noise)):
        np.testing.assert_allclose(ops.convert_to_numpy(out), x0, rtol=1e-4, atol=1e-4)


def test_ddim_with_eta_zero_is_deterministic():
    schedule = CosineSchedule(100)
    denoiser = MLPDenoiser(16, 2, 8)
    c = np.zeros((4, 6), "float32")
    predict = lambda x, t: denoiser(x, t, c)  # noqa: E731
    x = np.random.default_rng(2).normal(size=(4, 6)).astype("float32")
    first = samplers.ddim_sample(predict, x, 50, 10, schedule)
    second = samplers.ddim_sample(predict, x, 50, 10, schedule)
    np.testing.assert_array_equal(ops.convert_to_numpy(first), ops.convert_to_numpy(second))
    assert samplers.ddim_timesteps(50, 10) == [50, 45, 40, 35, 30, 25, 20, 15, 10, 5, 0]


def test_time_embedding_layer():
    run_layer_test(TimeEmbedding, {"dim": 8}, {"t": np.array([0, 5, 10, 99])}, (4, 8), 4)


@pytest.mark.parametrize("cls,kwargs,weights", [
    (MLPDenoiser, {"units": 16, "num_layers": 2, "time_embed_dim": 8}, 4 + 6),
    (TransformerDenoiser, {"units": 16, "num_layers": 1, "time_embed_dim": 8, "num_heads": 2}, 4 + 6 + 1 + 16 + 2),
])
def test_denoiser_layers(cls, kwargs, weights):
    inputs = {"x_t": np.ones((4, 6), "float32"), "t": np.array([1, 2, 3, 4]),
              "c": np.ones((4, 6), "float32")}
    run_layer_test(cls, kwargs, inputs, (4, 6), weights)


@pytest.mark.parametrize("cls", [MLPDenoiser, TransformerDenoiser])
def test_call_conditions_equals_one_call_per_condition(cls):
    """The MLP's shared first term (and the stacked call of the others) change nothing."""
    rng = np.random.default_rng(0)
    x_t = rng.normal(size=(5, 6)).astype("float32")
    t = np.array([0, 3, 7, 50, 99])
    conditions = [rng.normal(size=(5, 4)).astype("float32") for _ in range(3)]
    denoiser = cls(units=16, num_layers=2, time_embed_dim=8)
    denoiser.build((None, 6), (None,), (None, 4))
    together = denoiser.call_conditions(x_t, t, conditions)
    assert len(together) == 3
    for c, out in zip(conditions, together):
        np.testing.assert_allclose(ops.convert_to_numpy(out), ops.convert_to_numpy(denoiser(x_t, t, c)),
                                   rtol=1e-5, atol=1e-5)
    # One step for every row `(1,)` (the samplers) and one condition for every row
    # `(1, d_c)` (the null vector) are the same as their rows repeated.
    one_step, shared = np.array([50]), conditions[0][:1]
    broadcast = denoiser.call_conditions(x_t, one_step, [shared, conditions[1]])
    repeated = [denoiser(x_t, np.full(5, 50), c) for c in (np.repeat(shared, 5, axis=0), conditions[1])]
    for out, expected in zip(broadcast, repeated):
        assert tuple(out.shape) == (5, 6)
        np.testing.assert_allclose(ops.convert_to_numpy(out), ops.convert_to_numpy(expected),
                                   rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(denoiser(x_t, one_step, conditions[1])),
                               ops.convert_to_numpy(repeated[1]), rtol=1e-5, atol=1e-5)


def test_tcc_one_step_and_many_step_ddim_agree_on_a_trained_toy_model():
    """Train a small guided denoiser with the TCC losses on x0 = A c; both paths then find x0."""
    import tensorflow as tf

    from hierdiffuse_tf.guidance import GuidedDenoiser

    keras.utils.set_random_seed(0)
    T, t_star, d = 20, 10, 4
    schedule = CosineSchedule(T)
    guided = GuidedDenoiser(MLPDenoiser(64, 2, 16), mode="none", cond_dropout=0.0)
    A = np.random.default_rng(0).normal(size=(d, d)).astype("float32")
    optimizer = keras.optimizers.Adam(3e-3)
    seed = keras.random.SeedGenerator(1)

    @tf.function
    def step(c, iteration):
        x0 = tf.matmul(c, A)
        t = tf.random.uniform((256,), 1, T + 1, dtype=tf.int32)
        dt = tcc.curriculum_dt(iteration, 256, 400, T, seed)
        eps = tf.random.normal((256, d))
        x_t = schedule.q_sample(x0, t, eps)
        x_prev = schedule.q_sample(x0, tf.maximum(t - dt, 0), eps)
        present = tf.ones((256, 1), bool)
        with tf.GradientTape() as tape:
            pred = guided(tf.concat([x_t, x_prev], 0), tf.concat([t, tf.maximum(t - dt, 0)], 0),
                          tf.concat([c[:, None], c[:, None]], 0), None, tf.concat([present, present], 0),
                          training=True)
            pred_t, pred_prev = tf.split(pred, 2)
            recon, trajectory = tcc.tcc_losses(pred_t, pred_prev, x0, tf.maximum(t - dt, 0), "sum")
            loss = recon + tcc.lambda_schedule(iteration, 400) * trajectory
        grads = tape.gradient(loss, guided.trainable_variables)
        optimizer.apply(grads, guided.trainable_variables)
        return loss

    guided(np.zeros((2, d), "float32"), np.ones(2, "int32"), np.zeros((2, 1, d), "float32"), None,
           np.ones((2, 1), bool))
    for i in range(400):
        step(tf.random.normal((256, d)), tf.constant(i))
    c = np.random.default_rng(5).normal(size=(64, d)).astype("float32")
    x0 = c @ A
    present = np.ones((64, 1), bool)
    predict = lambda x, t: guided(x, t, c[:, None], None, present)  # noqa: E731
    x_start = np.sqrt(schedule.alpha_bar_table[t_star]).astype("float32") * x0  # eps = 0
    one_step = ops.convert_to_numpy(samplers.tcc_sample(predict, x_start, t_star))
    many = ops.convert_to_numpy(samplers.ddim_sample(predict, x_start, t_star, t_star, schedule))
    scale = np.linalg.norm(x0, axis=1).mean()
    assert np.linalg.norm(one_step - many, axis=1).mean() < 0.1 * scale
    assert np.linalg.norm(one_step - x0, axis=1).mean() < 0.2 * scale
