"""The CTR head: an MLP over `[h_fusion, e_target, h_fusion * e_target, h_S]` (SPEC 2)."""

from __future__ import annotations

import keras
import keras_rs
from keras import ops

from hierdiffuse_tf.utils import serializable


@serializable
class CTRHead(keras.layers.Layer):
    """Scores a user vector against the target and returns one logit per example.

    Args:
        units: tuple of int. Hidden widths of the MLP. Defaults to (64, 32).
        dropout: float. Dropout after each hidden layer. Defaults to 0.1.
        cross_layers: int. keras-rs `FeatureCross` (DCN-v2) layers applied to
            the concatenated input before the MLP. Defaults to 0.
        **kwargs: base layer arguments.

    Call arguments:
        user: `(B, d)`, h_fusion (or any user vector).
        target: `(B, d)`, the target item's embedding.
        context: `(B, d_c)`, extra user context (h_S), or None.
        training: bool.

    Returns:
        `(B,)` logits.
    """

    def __init__(self, units=(64, 32), dropout: float = 0.1, cross_layers: int = 0, **kwargs):
        super().__init__(**kwargs)
        if cross_layers < 0:
            raise ValueError(f"`cross_layers` must be >= 0. Received: `cross_layers={cross_layers}`")
        self.units = tuple(int(u) for u in units)
        self.dropout = dropout
        self.cross_layers = cross_layers

    def build(self, user_shape, target_shape=None, context_shape=None):
        width = 3 * user_shape[-1] + (context_shape[-1] if context_shape else 0)
        self.crosses = []
        for i in range(self.cross_layers):
            cross = keras_rs.layers.FeatureCross(dtype=self.dtype_policy, name=f"cross_{i}")
            cross.build((None, width))
            self.crosses.append(cross)
        self.hidden = []
        for i, units in enumerate(self.units):
            layer = keras.layers.Dense(units, activation="relu", dtype=self.dtype_policy,
                                       name=f"hidden_{i}")
            layer.build((None, width))
            width = units
            self.hidden.append(layer)
        self.drop = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="dropout")
        self.out = keras.layers.Dense(1, dtype=self.dtype_policy, name="logit")
        self.out.build((None, width))

    def call(self, user, target, context=None, training=None):
        parts = [user, target, user * target] + ([context] if context is not None else [])
        x0 = ops.concatenate(parts, axis=-1)  # (B, 3d + d_c)
        x = x0
        for cross in self.crosses:
            x = cross(x0, x)
        for layer in self.hidden:
            x = self.drop(layer(x), training=training)
        return ops.squeeze(self.out(x), axis=-1)  # (B,)

    def compute_output_shape(self, user_shape, *args, **kwargs):
        return (user_shape[0],)

    def get_config(self):
        return {**super().get_config(), "units": list(self.units), "dropout": self.dropout,
                "cross_layers": self.cross_layers}
