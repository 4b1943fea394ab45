"""Trajectory Convergence Constraint (paper Eq. 7-8, section 4.1.3).

Two points of one trajectory share their noise eps:
`x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps` and `x_{t-dt}` likewise. Then

    L_recon = ||f(x_t, t) - x0||^2
    L_TR    = ||f(x_t, t) - stop_gradient(f(x_{t-dt}, t - dt))||^2

where a span that reaches t - dt <= 0 uses x0 itself as the target (the
boundary condition f(x_0, 0) = x_0 of consistency training). Both schedules
read the training step, which `train_step` takes from `optimizer.iterations`,
so they survive checkpoint and resume:

* dt curriculum: dt ~ U{1, ..., dt_small T} for the first `switch` share of
  training, then dt ~ U{dt_small T, ..., dt_large T};
* lambda falls linearly from `lambda_start` to `lambda_end`.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from hierdiffuse_tf.distribute import batch_random


def training_progress(step, schedule_steps: int):
    """`step / schedule_steps`, clipped to [0, 1], as float32."""
    return ops.clip(ops.cast(step, "float32") / float(schedule_steps), 0.0, 1.0)


def lambda_schedule(step, schedule_steps: int, start: float = 1.0, end: float = 0.2):
    """Linear decay of the L_TR weight from `start` to `end` over `schedule_steps`."""
    return start + (end - start) * training_progress(step, schedule_steps)


def dt_bounds(num_steps: int, dt_small: float = 0.1, dt_large: float = 0.5) -> tuple[int, int]:
    """`(small, large)` spans, in steps: early spans are in 1..small, later ones in
    small..large."""
    small = max(1, int(math.floor(dt_small * num_steps)))
    return small, max(small, int(math.floor(dt_large * num_steps)))


def curriculum_dt(step, batch_size, schedule_steps: int, num_steps: int, seed,
                  switch: float = 0.3, dt_small: float = 0.1, dt_large: float = 0.5):
    """Per-example spans `(B,)` int32 from the curriculum at training step `step`."""
    small, large = dt_bounds(num_steps, dt_small, dt_large)
    u = batch_random(keras.random.uniform, (batch_size,), seed=seed)
    early = ops.floor(u * small) + 1.0  # U{1..small}
    late = ops.floor(u * (large - small + 1)) + small  # U{small..large}
    is_early = training_progress(step, schedule_steps) < switch
    return ops.cast(ops.where(is_early, early, late), "int32")


def tcc_losses(pred_t, pred_prev, x0, t_prev, reduction: str = "mean"):
    """L_recon and L_TR from the predictions at t and at t - dt.

    Args:
        pred_t: `(B, d)`, f(x_t, t).
        pred_prev: `(B, d)`, f(x_{t-dt}, t - dt); the gradient is stopped.
        x0: `(B, d)`, the clean vector.
        t_prev: `(B,)`, t - dt; where it is <= 0 the target is x0.
        reduction: "mean" (squared errors averaged over d) or "sum" (SPEC's
            squared norm, summed over d).

    Returns:
        `(L_recon, L_TR)`, float32 scalars (whatever the inputs' dtype, as Keras keeps
        losses under a mixed policy): each example's squared error reduced over d,
        averaged over B.
    """
    reduce = {"mean": ops.mean, "sum": ops.sum}.get(reduction)
    if reduce is None:
        raise ValueError(f"reduction must be 'mean' or 'sum'. Received: {reduction!r}")
    pred_t, pred_prev, x0 = (ops.cast(v, "float32") for v in (pred_t, pred_prev, x0))
    target = ops.where(ops.expand_dims(t_prev <= 0, -1), x0, ops.stop_gradient(pred_prev))
    recon = ops.mean(reduce(ops.square(pred_t - x0), axis=-1))
    trajectory = ops.mean(reduce(ops.square(pred_t - target), axis=-1))
    return recon, trajectory
