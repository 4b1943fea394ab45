"""The behaviour encoders f_L and f_S (paper 3.1) and masked pooling.

`SequenceEncoder` is a keras-hub `TransformerEncoder` stack over
`PositionEmbedding`-ed behaviour embeddings. f_L runs it over the long-term
sequence; f_S over each session, with the K sessions folded into the batch.
With `gated=True` (the default model, SPEC 2b) its output is
`e + g (T(e + pos) - e)` with a scalar g that starts at 0 (ReZero), so at the
start the tokens are the behaviour embeddings themselves and the position
embeddings cannot drown them.

Pooling the tokens into interest vectors (h_L, the sessions' h_S_k, the SGD
groups) is the job of a readout: `MaskedPooling` (the paper's mean) or
`attention.TargetAttentionReadout`. A row with nothing to pool gets a learned
"empty" vector, never NaN.
"""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

from hierdiffuse_tf.utils import serializable


def masked_mean(x, mask, axis: int = -2):
    """Mean of `x` over `axis` where `mask` is true, and the count of such rows.

    Args:
        x: `(..., L, d)` values.
        mask: `(..., L)` booleans.
        axis: the axis of L in `x`.

    Returns:
        `(mean (..., d), count (...))`; the mean is 0 where the count is 0.
    """
    weights = ops.cast(mask, x.dtype)
    total = ops.sum(x * ops.expand_dims(weights, -1), axis=axis)
    count = ops.sum(weights, axis=-1)
    return total / ops.expand_dims(ops.maximum(count, 1.0), -1), count


@serializable
class MaskedPooling(keras.layers.Layer):
    """Masked mean pooling with a learned vector for rows that have nothing to pool.

    Call arguments:
        x: `(..., L, d)` float tensor.
        padding_mask: `(..., L)` bool tensor.
        query: ignored. Accepted so that every readout takes the same
            arguments (see `attention.TargetAttentionReadout`).

    Returns:
        `(..., d)`: the mean of the unmasked rows, or the learned `empty`
        vector where every row is masked.

    Example:
    >>> pool = MaskedPooling()
    >>> h = pool(tokens, padding_mask)  # (B, d)
    """

    def build(self, x_shape, padding_mask_shape=None, query_shape=None):
        self.empty = self.add_weight(shape=(x_shape[-1],), initializer="zeros", name="empty")

    def pool_weighted(self, x, weights, padding_mask):
        """`sum_l weights_l x_l / count`, or `empty` where the count of real rows is 0."""
        count = ops.sum(ops.cast(padding_mask, x.dtype), axis=-1)  # (...)
        total = ops.sum(x * ops.expand_dims(weights, -1), axis=-2)  # (..., d)
        pooled = total / ops.expand_dims(ops.maximum(count, 1.0), -1)
        # `convert_to_tensor`: JAX no longer takes a Keras variable in `jnp.where`.
        return ops.where(ops.expand_dims(count > 0, -1), pooled, ops.convert_to_tensor(self.empty))

    def call(self, x, padding_mask, query=None):
        return self.pool_weighted(x, ops.cast(padding_mask, x.dtype), padding_mask)

    def compute_output_shape(self, x_shape, padding_mask_shape=None, query_shape=None):
        return tuple(x_shape[:-2]) + (x_shape[-1],)


@serializable
class SequenceEncoder(keras.layers.Layer):
    """Position embeddings plus a stack of keras-hub `TransformerEncoder` blocks.

    Args:
        sequence_length: int. The maximum sequence length L.
        num_layers: int. Transformer blocks. Defaults to 1.
        num_heads: int. Attention heads. Defaults to 2.
        intermediate_dim: int. Feed-forward width. Defaults to 64.
        dropout: float. Dropout rate. Defaults to 0.1.
        gated: bool. ReZero gate: return `x + g (T(x + pos) - x)` with a
            learned scalar g that starts at 0. Defaults to False (the plain
            stack, `T(x + pos)`).
        **kwargs: base layer arguments.

    Call arguments:
        x: `(B, L, d)` behaviour embeddings, or `(B, K, L, d)`: K sequences
            per example (sessions), encoded each on its own.
        padding_mask: `(B, L)` or `(B, K, L)` bool, true for real behaviours.
        training: bool.

    Returns:
        Contextual behaviour vectors of the shape of `x`, zero at padding.

    Example:
    >>> encoder = SequenceEncoder(sequence_length=10, gated=True)
    >>> tokens = encoder(embeddings, padding_mask)
    """

    def __init__(self, sequence_length: int, num_layers: int = 1, num_heads: int = 2,
                 intermediate_dim: int = 64, dropout: float = 0.1, gated: bool = False, **kwargs):
        super().__init__(**kwargs)
        if sequence_length < 1 or num_layers < 1 or num_heads < 1:
            raise ValueError("`sequence_length`, `num_layers` and `num_heads` must be >= 1. "
                             f"Received: {sequence_length}, {num_layers}, {num_heads}")
        self.sequence_length = sequence_length
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.gated = gated

    def build(self, x_shape, padding_mask_shape=None):
        folded = (None,) + tuple(x_shape[-2:])
        self.positions = keras_hub.layers.PositionEmbedding(
            self.sequence_length, dtype=self.dtype_policy, name="positions")
        self.positions.build(folded)
        self.blocks = []
        for i in range(self.num_layers):
            block = keras_hub.layers.TransformerEncoder(
                self.intermediate_dim, self.num_heads, dropout=self.dropout,
                normalize_first=True, dtype=self.dtype_policy, name=f"block_{i}")
            block.build(folded)
            self.blocks.append(block)
        if self.gated:
            self.gate = self.add_weight(shape=(), initializer="zeros", name="gate")

    def call(self, x, padding_mask, training=None):
        shape = ops.shape(x)
        L, d = x.shape[-2], x.shape[-1]
        e = ops.reshape(x, (-1, L, d))  # (B [K], L, d): sessions fold into the batch.
        mask = ops.reshape(padding_mask, (-1, L))
        h = e + self.positions(e)
        for block in self.blocks:
            h = block(h, padding_mask=mask, training=training)
        if self.gated:
            h = e + ops.cast(self.gate, h.dtype) * (h - e)
        h = h * ops.expand_dims(ops.cast(mask, h.dtype), -1)
        return ops.reshape(h, shape)

    def compute_output_shape(self, x_shape, padding_mask_shape=None):
        return tuple(x_shape)

    def get_config(self):
        return {**super().get_config(), "sequence_length": self.sequence_length,
                "num_layers": self.num_layers, "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim, "dropout": self.dropout,
                "gated": self.gated}
