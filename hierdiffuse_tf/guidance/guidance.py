"""Guidance of the denoiser: SGD (paper Eq. 6), CFG (Eq. 5) and plain conditioning.

SGD splits the conditioning behaviours into two semantic groups, y1 = niche
clicks (not popular) and y2 = trend-driven clicks (popular), and combines
`(1 - w1 - w2) f(x, t, null) + w1 f(x, t, y1) + w2 f(x, t, y2)` with adaptive
per-example weights `w_i = softplus(g_i([y_i, share_i]))`.

CFG: Eq. 5 as printed, `(1 - w) f(x, t) + f(x, t, g)`, is not the standard form
(at w = 0 it doubles the prediction). We implement the standard
classifier-free guidance `(1 + w) f(x, t, c) - w f(x, t, null)` (Ho and
Salimans, 2022), as SPEC 2 says.

All evaluations of one guided prediction run as one batched denoiser call
(`Denoiser.call_conditions`).
"""

from __future__ import annotations

import keras
from keras import ops

from hierdiffuse_tf.config import GUIDANCES, SGD_WEIGHTS
from hierdiffuse_tf.diffusion.denoiser import Denoiser
from hierdiffuse_tf.distribute import batch_random
from hierdiffuse_tf.layers.encoders import masked_mean
from hierdiffuse_tf.utils import serializable


def sgd_combine(f_null, f_1, f_2, w_1, w_2):
    """Eq. 6 on x0 predictions: `(1 - w1 - w2) f_null + w1 f_1 + w2 f_2`; w_i are `(B, 1)`."""
    return (1.0 - w_1 - w_2) * f_null + w_1 * f_1 + w_2 * f_2


def cfg_combine(f_cond, f_null, scale: float):
    """Standard classifier-free guidance: `(1 + w) f_cond - w f_null`."""
    return (1.0 + scale) * f_cond - scale * f_null


def semantic_groups(tokens, mask, popular, pool=None):
    """Pools behaviour vectors into the two SGD groups.

    Args:
        tokens: `(B, L, d)` encoded behaviours (K sessions flattened into L).
        mask: `(B, L)` bool, real behaviours.
        popular: `(B, L)` int, 1 where the item is popular.
        pool: `pool(tokens, group_mask) -> (B, d)`, the readout of one group
            (e.g. a target-attention readout). Defaults to the masked mean.

    Returns:
        `(conds (B, 2, d), shares (B, 2), present (B, 2))`: group 0 is niche
        (y1), group 1 trend-driven (y2); `share_i` is the fraction of the
        behaviours in group i; an empty group is not `present`.
    """
    pool = pool or (lambda x, m: masked_mean(x, m)[0])
    is_popular = ops.cast(popular, "int32") > 0
    niche_mask = ops.logical_and(mask, ops.logical_not(is_popular))
    trend_mask = ops.logical_and(mask, is_popular)
    n1 = ops.sum(ops.cast(niche_mask, tokens.dtype), axis=-1)
    n2 = ops.sum(ops.cast(trend_mask, tokens.dtype), axis=-1)
    total = ops.maximum(n1 + n2, 1.0)
    conds = ops.stack([pool(tokens, niche_mask), pool(tokens, trend_mask)], axis=1)  # (B, 2, d)
    shares = ops.stack([n1 / total, n2 / total], axis=1)  # (B, 2)
    present = ops.stack([n1 > 0, n2 > 0], axis=1)  # (B, 2)
    return conds, shares, present


@serializable
class GuidedDenoiser(keras.layers.Layer):
    """Wraps a denoiser with a guidance rule, a learned null condition and condition dropout.

    Args:
        denoiser: a `Denoiser` (e.g. `MLPDenoiser`).
        mode: str. "sgd" (two conditions, Eq. 6), "cfg" (one condition,
            the standard CFG mix `(1 + w) f(c) - w f(null)`) or "none" (one
            condition, used as it is). With no conditions at all, every mode
            predicts from the null vector. Defaults to "sgd". The mix is the
            layer's output in training too, so a loss trains the guided
            prediction that the samplers use, as SGD's learned weights must
            be; standard CFG training instead fits `f(c)` alone (with the
            condition dropout) and mixes only when sampling.
        cond_dropout: float. In training, each condition is replaced by the
            null vector with this probability, independently per example.
            Defaults to 0.1.
        cfg_scale: float. w of CFG. Defaults to 1.0.
        sgd_weights: str. "adaptive" or "fixed". Defaults to "adaptive".
        sgd_fixed_w: (float, float). The weights when `sgd_weights="fixed"`.
            Defaults to (0.5, 0.5).
        seed: int or None. Seed of the condition dropout. Defaults to None.
        **kwargs: base layer arguments.

    Call arguments:
        x_t: `(B, d)`.
        t: `(B,)` steps, or `(1,)`: one step for every row (the samplers).
        conds: `(B, G, d_c)` conditions, G = 2 for "sgd", 1 otherwise, or
            None for no condition.
        shares: `(B, G)` fraction of behaviours in each group (SGD weights).
        present: `(B, G)` bool; an absent condition acts as null.
        training: bool.

    Returns:
        `(B, d)`, the guided x0 prediction.

    Example:
    >>> guided = GuidedDenoiser(MLPDenoiser(64), mode="sgd")
    >>> conds, shares, present = semantic_groups(tokens, mask, popular)
    >>> x0_hat = guided(x_t, t, conds, shares, present)  # (B, d)

    References:
        Ni et al., HierDiffuse, EMNLP 2025 (Eq. 5-6); Ho and Salimans,
        Classifier-Free Diffusion Guidance, 2022.
    """

    def __init__(self, denoiser: Denoiser, mode: str = "sgd", cond_dropout: float = 0.1,
                 cfg_scale: float = 1.0, sgd_weights: str = "adaptive",
                 sgd_fixed_w=(0.5, 0.5), seed=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in GUIDANCES:  # The config's `guidance` values are the layer's modes.
            raise ValueError(f"`mode` must be one of {GUIDANCES}. Received: `mode={mode}`")
        if sgd_weights not in SGD_WEIGHTS:
            raise ValueError(f"`sgd_weights` must be one of {SGD_WEIGHTS}. Received: {sgd_weights!r}")
        if not 0.0 <= cond_dropout < 1.0:
            raise ValueError(f"`cond_dropout` must be in [0, 1). Received: {cond_dropout}")
        self.denoiser = denoiser
        self.mode = mode
        self.cond_dropout = cond_dropout
        self.cfg_scale = cfg_scale
        self.sgd_weights = sgd_weights
        self.sgd_fixed_w = tuple(float(w) for w in sgd_fixed_w)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="cond_dropout_seed")

    def build(self, x_t_shape, t_shape=None, conds_shape=None, shares_shape=None,
              present_shape=None):
        width = conds_shape[-1] if conds_shape else x_t_shape[-1]
        self.null = self.add_weight(shape=(width,), initializer="zeros", name="null")
        if not self.denoiser.built:
            self.denoiser.build(x_t_shape, (None,), (None, width))
        if self.mode == "sgd" and self.sgd_weights == "adaptive" and conds_shape is not None:
            self.weight_nets = []
            for i in range(2):
                g = keras.layers.Dense(1, dtype=self.dtype_policy, name=f"g_{i + 1}",
                                       bias_initializer=keras.initializers.Constant(-1.0))
                g.build((None, width + 1))
                self.weight_nets.append(g)

    def _nullify(self, conds, present, training, copies=1):
        """Absent conditions, and dropped ones in training, become the null vector."""
        keep = present
        if training and self.cond_dropout > 0:
            shape = ops.shape(present)
            draw = batch_random(keras.random.uniform, (shape[0] // copies,) + tuple(shape[1:]),
                                seed=self.seed_generator)
            draw = ops.concatenate([draw] * copies, axis=0) if copies > 1 else draw
            keep = ops.logical_and(keep, draw >= self.cond_dropout)
        return ops.where(ops.expand_dims(keep, -1), conds, ops.cast(self.null, conds.dtype))

    def group_weights(self, conds, shares):
        """SGD's (w1, w2), each `(B, 1)`: learned from each group's vector and share
        (`sgd_weights="adaptive"`, Eq. 6), or `sgd_fixed_w` (`"fixed"`)."""
        if self.sgd_weights == "fixed":
            ones = ops.ones_like(shares[:, :1])
            return self.sgd_fixed_w[0] * ones, self.sgd_fixed_w[1] * ones
        return tuple(
            ops.softplus(g(ops.concatenate([conds[:, i], shares[:, i:i + 1]], axis=-1)))
            for i, g in enumerate(self.weight_nets))

    def call(self, x_t, t, conds=None, shares=None, present=None, training=None, copies=1, mix=True):
        """`copies` > 1: the batch is that many stacked copies of the same examples,
        which share one condition-dropout draw (a TCC pair sees the same conditions).
        `mix=False` (mode "cfg"): the conditional prediction f(c) alone, unmixed, as
        standard CFG training fits it."""
        null = ops.expand_dims(ops.cast(self.null, x_t.dtype), 0)  # (1, d_c): one row, broadcast
        if conds is None:
            return self.denoiser.call_conditions(x_t, t, [null], training)[0]
        conds = self._nullify(conds, present, training, copies)
        if self.mode == "none" or (self.mode == "cfg" and not mix):
            return self.denoiser.call_conditions(x_t, t, [conds[:, 0]], training)[0]
        if self.mode == "cfg":
            f_cond, f_null = self.denoiser.call_conditions(x_t, t, [conds[:, 0], null], training)
            return cfg_combine(f_cond, f_null, self.cfg_scale)
        f_null, f_1, f_2 = self.denoiser.call_conditions(
            x_t, t, [null, conds[:, 0], conds[:, 1]], training)
        w_1, w_2 = self.group_weights(conds, shares)
        return sgd_combine(f_null, f_1, f_2, w_1, w_2)

    def compute_output_shape(self, x_t_shape, *args, **kwargs):
        return tuple(x_t_shape)

    def get_config(self):
        return {**super().get_config(),
                "denoiser": keras.saving.serialize_keras_object(self.denoiser),
                "mode": self.mode, "cond_dropout": self.cond_dropout, "cfg_scale": self.cfg_scale,
                "sgd_weights": self.sgd_weights, "sgd_fixed_w": list(self.sgd_fixed_w),
                "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["denoiser"] = keras.saving.deserialize_keras_object(config["denoiser"])
        return cls(**config)
