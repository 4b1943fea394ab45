"""The reverse paths from x_{t*}: TCC one step, DDIM k steps, DDPM every step.

Each takes `predict_x0(x_t, t) -> x0`, the (guided) denoiser, so every path runs
the same network. Steps are Python ints, so each path unrolls into a fixed graph.
Every row is at the same step, so `t` is passed as one step of shape `(1,)`,
which the denoisers broadcast over the rows: what depends on the step alone (the
time embedding and its share of the first layer) is computed once per step, not
once per row.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from hierdiffuse_tf.diffusion.schedule import CosineSchedule


def _step(t: int):
    """Step `t` for every row, shape `(1,)` (broadcast by the denoisers)."""
    return ops.full((1,), t, dtype="int32")


def tcc_sample(predict_x0, x_start, t_start: int):
    """TCC (Eq. 7-8): the consistency mapping jumps from x_{t*} to x0 in one call."""
    return predict_x0(x_start, _step(t_start))


def ddim_timesteps(t_start: int, num_steps: int) -> list[int]:
    """`num_steps + 1` decreasing steps from t* to 0, evenly spaced."""
    return sorted({int(round(v)) for v in np.linspace(t_start, 0, num_steps + 1)}, reverse=True)


def ddim_sample(predict_x0, x_start, t_start: int, num_steps: int, schedule: CosineSchedule):
    """Deterministic DDIM (Song et al., 2020; eta = 0) from x_{t*} in `num_steps` steps."""
    x = x_start
    steps = ddim_timesteps(t_start, num_steps)
    for t, t_prev in zip(steps[:-1], steps[1:]):
        step = _step(t)
        x0 = predict_x0(x, step)
        eps = schedule.x0_to_eps(x, step, x0)
        ab_prev = schedule.alpha_bar_table[t_prev]
        x = float(np.sqrt(ab_prev)) * x0 + float(np.sqrt(1 - ab_prev)) * eps
    return x


def ddpm_sample(predict_x0, x_start, t_start: int, schedule: CosineSchedule, noise_fn=None):
    """DDPM (Ho et al., 2020) ancestral sampling over every step from t* down to 0.

    With `noise_fn=None` it follows the posterior mean, which makes serving
    deterministic; the last step's variance is 0 either way.
    """
    x = x_start
    ab_table = schedule.alpha_bar_table
    for t in range(t_start, 0, -1):
        x0 = predict_x0(x, _step(t))
        ab, ab_prev = ab_table[t], ab_table[t - 1]
        alpha = ab / ab_prev
        beta = 1.0 - alpha
        coef_x0 = np.sqrt(ab_prev) * beta / (1.0 - ab)
        coef_xt = np.sqrt(alpha) * (1.0 - ab_prev) / (1.0 - ab)
        x = float(coef_x0) * x0 + float(coef_xt) * x
        variance = beta * (1.0 - ab_prev) / (1.0 - ab)
        if t > 1 and noise_fn is not None:
            x = x + float(np.sqrt(variance)) * noise_fn(ops.shape(x))
    return x
