"""The cosine noise schedule (paper Eq. 10-11) and the forward process (Eq. 2)."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from hierdiffuse_tf.distribute import batch_random
from hierdiffuse_tf.utils import serializable


def cosine_alpha_bar(T: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """`alpha_bar[t]` for t = 0..T (float64), with alpha_bar[0] = 1.

    Eq. 10 gives alpha_bar(t) = f(t) / f(0), f(t) = cos(pi/2 (t/T + s)/(1 + s)).
    Eq. 11 gives beta_t = 1 - alpha_bar(t) / alpha_bar(t - 1), clipped to at
    most `max_beta`; the table is the cumulative product of 1 - beta_t.
    """
    f = np.cos(np.pi / 2 * (np.arange(T + 1) / T + s) / (1 + s))
    raw = f / f[0]
    betas = np.clip(1.0 - raw[1:] / raw[:-1], 0.0, max_beta)
    return np.concatenate([[1.0], np.cumprod(1.0 - betas)])


@serializable
class CosineSchedule(keras.layers.Layer):
    """Holds the alpha_bar table and applies the forward process.

    Args:
        num_steps: int. T, the number of diffusion steps. Defaults to 100.
        s: float. The offset of Eq. 10. Defaults to 0.008.
        max_beta: float. Upper clip of beta_t. Defaults to 0.999.
        **kwargs: base layer arguments.

    Call arguments:
        t: int tensor of steps in [0, T].

    Returns:
        alpha_bar_t, same shape as `t`.

    Example:
    >>> schedule = CosineSchedule(100)
    >>> x_t = schedule.q_sample(x0, t, eps)  # sqrt(ab_t) x0 + sqrt(1 - ab_t) eps

    References:
        Nichol and Dhariwal, Improved DDPM (2021); HierDiffuse Eq. 10-11.
    """

    def __init__(self, num_steps: int = 100, s: float = 0.008, max_beta: float = 0.999, **kwargs):
        super().__init__(**kwargs)
        if num_steps < 2:
            raise ValueError(f"`num_steps` must be >= 2. Received: `num_steps={num_steps}`")
        if not 0.0 < max_beta < 1.0:
            raise ValueError(f"`max_beta` must be in (0, 1). Received: `max_beta={max_beta}`")
        self.num_steps = num_steps
        self.s = s
        self.max_beta = max_beta
        self.alpha_bar_table = cosine_alpha_bar(num_steps, s, max_beta)
        self.built = True

    def alpha_bar(self, t):
        table = ops.convert_to_tensor(self.alpha_bar_table.astype("float32"))
        return ops.take(table, ops.cast(t, "int32"))

    def call(self, t):
        return self.alpha_bar(t)

    def q_sample(self, x0, t, eps):
        """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, with t of shape `(B,)`.

        The coefficients are computed in float32 and applied in `x0`'s dtype (bfloat16
        under a mixed policy)."""
        ab = ops.expand_dims(self.alpha_bar(t), -1)  # (B, 1)
        return (ops.cast(ops.sqrt(ab), x0.dtype) * x0
                + ops.cast(ops.sqrt(1.0 - ab), x0.dtype) * ops.cast(eps, x0.dtype))

    def sample_steps(self, batch, seed):
        """Training steps t ~ U{1..T}, int32 `(batch,)`, from `seed` (a `SeedGenerator`)."""
        u = batch_random(keras.random.uniform, (batch,), seed=seed)
        return ops.cast(ops.floor(u * self.num_steps) + 1, "int32")

    def x0_to_eps(self, x_t, t, x0):
        """eps = (x_t - sqrt(ab_t) x0) / sqrt(1 - ab_t), for the DDPM and DDIM paths.

        In float32 whatever the inputs' dtype (the division by a small sqrt(1 - ab_t)
        would magnify bfloat16's rounding), returned in `x_t`'s dtype."""
        ab = ops.expand_dims(self.alpha_bar(t), -1)
        x_t32, x032 = ops.cast(x_t, "float32"), ops.cast(x0, "float32")
        eps = (x_t32 - ops.sqrt(ab) * x032) / ops.sqrt(ops.maximum(1.0 - ab, 1e-12))
        return ops.cast(eps, x_t.dtype)

    def compute_output_shape(self, t_shape):
        return t_shape

    def get_config(self):
        return {**super().get_config(), "num_steps": self.num_steps, "s": self.s,
                "max_beta": self.max_beta}


def timestep_embedding(t, dim: int, max_period: float = 10_000.0):
    """Sinusoidal embedding `(B, dim)` of float or int steps `t` of shape `(B,)`."""
    half = dim // 2
    freqs = ops.exp(-math.log(max_period) * ops.arange(half, dtype="float32") / half)
    args = ops.expand_dims(ops.cast(t, "float32"), -1) * ops.expand_dims(freqs, 0)
    emb = ops.concatenate([ops.cos(args), ops.sin(args)], axis=-1)
    if dim % 2:
        emb = ops.pad(emb, [[0, 0], [0, 1]])
    return emb
