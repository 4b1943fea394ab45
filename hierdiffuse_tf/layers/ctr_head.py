"""The CTR head: an MLP over `[h_fusion, e_t, h_fusion * e_t, h_S, h_S * e_t]` (SPEC 2b;
the paper's SPEC 2 head drops the last cross, `context_cross=False`)."""

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
        context_cross: bool. Also feed `context * target`, so the context
            meets the target multiplicatively (needs `context` as wide as
            `target`). Defaults to False.
        **kwargs: base layer arguments.

    Call arguments:
        user: `(B, d)`, h_fusion (or any user vector).
        target: `(B, d)`, the target item's embedding.
        context: `(B, d_c)`, extra user context (h_S), or None.
        training: bool.

    Returns:
        `(B,)` logits.

    Example:
    >>> head = CTRHead(units=(64, 32), context_cross=True)
    >>> logit = head(h_fusion, target_embedding, h_short)  # (B,)
    """

    def __init__(self, units=(64, 32), dropout: float = 0.1, cross_layers: int = 0,
                 context_cross: bool = False, **kwargs):
        super().__init__(**kwargs)
        if cross_layers < 0:
            raise ValueError(f"`cross_layers` must be >= 0. Received: `cross_layers={cross_layers}`")
        self.units = tuple(int(u) for u in units)
        self.dropout = dropout
        self.cross_layers = cross_layers
        self.context_cross = context_cross

    def features(self, user, target, context=None):
        """The MLP's input: `[user, target, user * target]`, then `context` and
        `context * target` where given and switched on."""
        parts = [user, target, user * target]
        if context is not None:
            parts.append(context)
            if self.context_cross:
                parts.append(context * target)
        return ops.concatenate(parts, axis=-1)

    def build(self, user_shape, target_shape=None, context_shape=None):
        width = 3 * user_shape[-1]
        if context_shape:
            width += context_shape[-1] * (2 if self.context_cross else 1)
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
        x0 = self.features(user, target, context)  # (B, 3d + d_c [+ d])
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
                "cross_layers": self.cross_layers, "context_cross": self.context_cross}
