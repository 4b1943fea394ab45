"""DIN (Zhou et al., KDD 2018): target attention over all behaviours (Table 1)."""

from __future__ import annotations

import keras
from keras import ops

from hierdiffuse_tf.models.base import Forward
from hierdiffuse_tf.models.sequence_base import SequenceCTRModel
from hierdiffuse_tf.utils import serializable


@serializable
class ActivationUnit(keras.layers.Layer):
    """DIN's activation unit: an MLP over `[key, query, key - query, key * query]`.

    Weights are not normalised by a softmax, as in DIN, so the pooled vector
    keeps the intensity of the user's interest.

    Args:
        units: tuple of int. Hidden widths (PReLU). Defaults to (36,).
        **kwargs: base layer arguments.

    Call arguments:
        keys: `(B, L, d)` behaviour embeddings.
        query: `(B, d)` target embedding.
        padding_mask: `(B, L)` bool.

    Returns:
        `(pooled (B, d), weights (B, L))`.
    """

    def __init__(self, units=(36,), **kwargs):
        super().__init__(**kwargs)
        self.units = tuple(int(u) for u in units)

    def build(self, keys_shape, query_shape=None, padding_mask_shape=None):
        width = 4 * keys_shape[-1]
        self.hidden = []
        for i, units in enumerate(self.units):
            dense = keras.layers.Dense(units, dtype=self.dtype_policy, name=f"hidden_{i}")
            dense.build((None, None, width))
            act = keras.layers.PReLU(shared_axes=[1], dtype=self.dtype_policy, name=f"prelu_{i}")
            act.build((None, None, units))
            self.hidden.append((dense, act))
            width = units
        self.score = keras.layers.Dense(1, dtype=self.dtype_policy, name="score")
        self.score.build((None, None, width))

    def call(self, keys, query, padding_mask):
        q = ops.broadcast_to(ops.expand_dims(query, 1), ops.shape(keys))  # (B, L, d)
        h = ops.concatenate([keys, q, keys - q, keys * q], axis=-1)  # (B, L, 4d)
        for dense, act in self.hidden:
            h = act(dense(h))
        weights = ops.squeeze(self.score(h), -1) * ops.cast(padding_mask, keys.dtype)  # (B, L)
        return ops.sum(keys * ops.expand_dims(weights, -1), axis=1), weights

    def compute_output_shape(self, keys_shape, *args, **kwargs):
        return (keys_shape[0], keys_shape[-1]), tuple(keys_shape[:2])

    def get_config(self):
        return {**super().get_config(), "units": list(self.units)}


@serializable
class DIN(SequenceCTRModel):
    """Deep Interest Network: the activation unit pools the behaviours for each target."""

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.attention = ActivationUnit(config.attention_units, name="attention")

    def forward(self, features, training=False, labels=None) -> Forward:
        seq, mask, target = self.sequence(features)
        user, _ = self.attention(seq, target, mask)  # (B, d)
        return Forward(logit=self.head(user, target, training=training))
