"""The denoiser f_theta(x_t, t, c), which predicts x0 (paper Eq. 4, SPEC 2).

One network serves every sampler: the DDPM and DDIM paths turn its x0 into
epsilon with `CosineSchedule.x0_to_eps`. Two backbones (Table 2b): an MLP over
`[x_t, time_embedding(t), c]` (the paper's choice) and a small transformer over
the three tokens `[x_t, t, c]`.
"""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

from hierdiffuse_tf.diffusion.schedule import timestep_embedding
from hierdiffuse_tf.utils import serializable


@serializable
class TimeEmbedding(keras.layers.Layer):
    """Sinusoidal embedding of the step, then Dense-SiLU-Dense.

    Args:
        dim: int. Output width. Defaults to 32.
        **kwargs: base layer arguments.

    Call arguments:
        t: `(B,)` int or float steps.

    Returns:
        `(B, dim)`.

    Example:
    >>> TimeEmbedding(32)(ops.convert_to_tensor([0, 50, 99]))  # (3, 32)
    """

    def __init__(self, dim: int = 32, **kwargs):
        super().__init__(**kwargs)
        if dim < 2:
            raise ValueError(f"`dim` must be >= 2. Received: `dim={dim}`")
        self.dim = dim

    def build(self, t_shape):
        self.hidden = keras.layers.Dense(self.dim, activation="silu", dtype=self.dtype_policy,
                                         name="hidden")
        self.hidden.build((None, self.dim))
        self.out = keras.layers.Dense(self.dim, dtype=self.dtype_policy, name="out")
        self.out.build((None, self.dim))

    def call(self, t):
        return self.out(self.hidden(timestep_embedding(t, self.dim)))  # (B, dim)

    def compute_output_shape(self, t_shape):
        return (t_shape[0], self.dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


class Denoiser(keras.layers.Layer):
    """Base of the denoisers: `call(x_t, t, c) -> x0`, with x0 as wide as x_t.

    Args:
        units: int. Hidden width. Defaults to 128.
        num_layers: int. Hidden layers (MLP) or blocks (transformer). Defaults to 2.
        time_embed_dim: int. Width of the time embedding. Defaults to 32.
        **kwargs: base layer arguments.

    Call arguments:
        x_t: `(B, d)` noisy vector.
        t: `(B,)` steps, or `(1,)`: one step for every row (the samplers), embedded once.
        c: `(B, d_c)` condition (the learned null vector when unconditioned).
        training: bool.

    Returns:
        `(B, d)`, the predicted x0.

    Example:
    >>> denoiser = MLPDenoiser(units=128, num_layers=2)
    >>> x0_hat = denoiser(x_t, t, condition)  # (B, d)
    """

    def __init__(self, units: int = 128, num_layers: int = 2, time_embed_dim: int = 32, **kwargs):
        super().__init__(**kwargs)
        if units < 1 or num_layers < 1:
            raise ValueError(f"`units` and `num_layers` must be >= 1. Received: {units}, {num_layers}")
        self.units = units
        self.num_layers = num_layers
        self.time_embed_dim = time_embed_dim

    def build(self, x_t_shape, t_shape=None, c_shape=None):
        self.time_embedding = TimeEmbedding(self.time_embed_dim, dtype=self.dtype_policy,
                                            name="time_embedding")
        self.time_embedding.build((None,))

    def call_conditions(self, x_t, t, conditions, training=None):
        """The predictions at `(x_t, t)` under each of `conditions`: a list of `(B, d)`,
        from one call over the stacked rows.

        `t` is `(B,)`, or `(1,)` for one step shared by every row (the samplers);
        a condition is `(B, d_c)`, or `(1, d_c)` for one shared by every row (the
        null vector). Subclasses may compute such shared parts once.
        """
        n = len(conditions)
        batch = ops.shape(x_t)[0]
        if t.shape[0] != 1:  # One step per row: repeated for each condition's rows.
            t = ops.concatenate([t] * n, axis=0)
        conditions = [ops.broadcast_to(c, (batch, ops.shape(c)[-1])) for c in conditions]
        out = self(ops.concatenate([x_t] * n, axis=0), t, ops.concatenate(conditions, axis=0),
                   training=training)
        return ops.split(out, n, axis=0)

    def compute_output_shape(self, x_t_shape, t_shape=None, c_shape=None):
        return tuple(x_t_shape)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_layers": self.num_layers,
                "time_embed_dim": self.time_embed_dim}


@serializable
class MLPDenoiser(Denoiser):
    """The paper's denoiser: an MLP over `[x_t, time_embedding(t), c]` (SiLU)."""

    def build(self, x_t_shape, t_shape=None, c_shape=None):
        super().build(x_t_shape, t_shape, c_shape)
        width = x_t_shape[-1] + self.time_embed_dim + (c_shape or x_t_shape)[-1]
        self.hidden = []
        for i in range(self.num_layers):
            layer = keras.layers.Dense(self.units, activation="silu", dtype=self.dtype_policy,
                                       name=f"hidden_{i}")
            layer.build((None, width))
            width = self.units
            self.hidden.append(layer)
        self.out = keras.layers.Dense(x_t_shape[-1], dtype=self.dtype_policy, name="out")
        self.out.build((None, width))

    def call(self, x_t, t, c, training=None):
        time = ops.broadcast_to(self.time_embedding(t), (ops.shape(x_t)[0], self.time_embed_dim))
        h = ops.concatenate([x_t, time, c], axis=-1)  # (B, d + d_t + d_c)
        for layer in self.hidden:
            h = layer(h)
        return self.out(h)  # (B, d)

    def call_conditions(self, x_t, t, conditions, training=None):
        """`Denoiser.call_conditions` without repeating what the conditions share.

        The first layer reads `[x_t, time(t), c]`: its kernel splits into the
        rows that read each part, so `x_t`'s and the time's terms are computed
        once, not once per condition. A one-step `t` `(1,)` and a shared
        condition `(1, d_c)` (the null vector) are each computed for one row and
        broadcast.
        """
        first, *rest = self.hidden
        kernel = ops.convert_to_tensor(first.kernel)
        d = x_t.shape[-1]
        split = d + self.time_embed_dim
        shared = (ops.matmul(x_t, kernel[:d]) + ops.matmul(self.time_embedding(t), kernel[d:split])
                  + ops.convert_to_tensor(first.bias))  # (B, units)
        h = ops.concatenate([shared + ops.matmul(c, kernel[split:]) for c in conditions], axis=0)
        h = first.activation(h)  # (n B, units)
        for layer in rest:
            h = layer(h)
        return ops.split(self.out(h), len(conditions), axis=0)


@serializable
class TransformerDenoiser(Denoiser):
    """A keras-hub transformer over the three tokens `[x_t, t, c]` (Table 2b).

    Takes the `Denoiser` arguments plus `num_heads` (int, defaults to 2).
    """

    def __init__(self, units: int = 128, num_layers: int = 2, time_embed_dim: int = 32,
                 num_heads: int = 2, **kwargs):
        super().__init__(units, num_layers, time_embed_dim, **kwargs)
        self.num_heads = num_heads

    def build(self, x_t_shape, t_shape=None, c_shape=None):
        super().build(x_t_shape, t_shape, c_shape)
        d = x_t_shape[-1]
        if d % self.num_heads:
            raise ValueError(f"`num_heads` must divide the width {d}. Received: `num_heads={self.num_heads}`")
        self.project = {}
        for name, width in (("x", d), ("t", self.time_embed_dim), ("c", (c_shape or x_t_shape)[-1])):
            layer = keras.layers.Dense(d, dtype=self.dtype_policy, name=f"project_{name}")
            layer.build((None, width))
            self.project[name] = layer
        self.token_type = self.add_weight(shape=(3, d), initializer="zeros", name="token_type")
        self.blocks = []
        for i in range(self.num_layers):
            block = keras_hub.layers.TransformerEncoder(
                self.units, self.num_heads, normalize_first=True, dtype=self.dtype_policy,
                name=f"block_{i}")
            block.build((None, 3, d))
            self.blocks.append(block)
        self.out = keras.layers.Dense(d, dtype=self.dtype_policy, name="out")
        self.out.build((None, d))

    def call(self, x_t, t, c, training=None):
        time = self.project["t"](self.time_embedding(t))  # (1, d) for one step, else (B, d)
        tokens = ops.stack([self.project["x"](x_t), ops.broadcast_to(time, ops.shape(x_t)),
                            self.project["c"](c)], axis=1) + self.token_type  # (B, 3, d)
        for block in self.blocks:
            tokens = block(tokens, training=training)
        return self.out(tokens[:, 0])  # (B, d)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads}


def make_denoiser(backbone: str, units: int, num_layers: int, time_embed_dim: int,
                  num_heads: int = 2, **kwargs) -> Denoiser:
    if backbone == "mlp":
        return MLPDenoiser(units, num_layers, time_embed_dim, **kwargs)
    if backbone == "transformer":
        return TransformerDenoiser(units, num_layers, time_embed_dim, num_heads, **kwargs)
    raise ValueError(f"`backbone` must be 'mlp' or 'transformer'. Received: `backbone={backbone}`")
