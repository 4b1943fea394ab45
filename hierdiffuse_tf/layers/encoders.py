"""The long-term encoder f_L and the short-term encoder f_S (paper 3.1, Eq. 3).

Both are keras-hub `TransformerEncoder` stacks over `PositionEmbedding`-ed
behaviour embeddings, followed by masked mean pooling. A row with nothing to
pool gets a learned "empty" vector, never NaN.
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

    Returns:
        `(..., d)`: the mean of the unmasked rows, or the learned `empty`
        vector where every row is masked.
    """

    def build(self, x_shape, padding_mask_shape=None):
        self.empty = self.add_weight(shape=(x_shape[-1],), initializer="zeros", name="empty")

    def call(self, x, padding_mask):
        mean, count = masked_mean(x, padding_mask)
        # `convert_to_tensor`: JAX no longer takes a Keras variable in `jnp.where`.
        return ops.where(ops.expand_dims(count > 0, -1), mean, ops.convert_to_tensor(self.empty))

    def compute_output_shape(self, x_shape, padding_mask_shape=None):
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
        **kwargs: base layer arguments.

    Call arguments:
        x: `(B, L, d)` behaviour embeddings.
        padding_mask: `(B, L)` bool, true for real behaviours.
        training: bool.

    Returns:
        `(B, L, d)` contextual behaviour vectors.
    """

    def __init__(self, sequence_length: int, num_layers: int = 1, num_heads: int = 2,
                 intermediate_dim: int = 64, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if sequence_length < 1 or num_layers < 1 or num_heads < 1:
            raise ValueError("`sequence_length`, `num_layers` and `num_heads` must be >= 1. "
                             f"Received: {sequence_length}, {num_layers}, {num_heads}")
        self.sequence_length = sequence_length
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout

    def build(self, x_shape, padding_mask_shape=None):
        self.positions = keras_hub.layers.PositionEmbedding(
            self.sequence_length, dtype=self.dtype_policy, name="positions")
        self.positions.build(x_shape)
        self.blocks = []
        for i in range(self.num_layers):
            block = keras_hub.layers.TransformerEncoder(
                self.intermediate_dim, self.num_heads, dropout=self.dropout,
                normalize_first=True, dtype=self.dtype_policy, name=f"block_{i}")
            block.build(x_shape)
            self.blocks.append(block)

    def call(self, x, padding_mask, training=None):
        x = x + self.positions(x)  # (B, L, d)
        for block in self.blocks:
            x = block(x, padding_mask=padding_mask, training=training)
        return x * ops.expand_dims(ops.cast(padding_mask, x.dtype), -1)

    def compute_output_shape(self, x_shape, padding_mask_shape=None):
        return tuple(x_shape)

    def get_config(self):
        return {**super().get_config(), "sequence_length": self.sequence_length,
                "num_layers": self.num_layers, "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim, "dropout": self.dropout}


@serializable
class LongTermEncoder(SequenceEncoder):
    """f_L: encodes the long-term sequence and pools it into h_L.

    Takes the `SequenceEncoder` arguments.

    Call arguments:
        x: `(B, M, d)` embeddings of the long-term behaviours.
        padding_mask: `(B, M)` bool, true for real behaviours.
        training: bool.

    Returns:
        `(h_L (B, d), tokens (B, M, d))`.
    """

    def build(self, x_shape, padding_mask_shape=None):
        super().build(x_shape, padding_mask_shape)
        self.pool = MaskedPooling(dtype=self.dtype_policy, name="pool")
        self.pool.build(x_shape)

    def call(self, x, padding_mask, training=None):
        tokens = super().call(x, padding_mask, training=training)  # (B, M, d)
        return self.pool(tokens, padding_mask), tokens

    def compute_output_shape(self, x_shape, padding_mask_shape=None):
        return (x_shape[0], x_shape[-1]), tuple(x_shape)


@serializable
class ShortTermEncoder(SequenceEncoder):
    """f_S: encodes each session on its own, then averages the sessions (Eq. 3).

    Takes the `SequenceEncoder` arguments; `sequence_length` is N, the
    session length. The K sessions are folded into the batch.

    Call arguments:
        x: `(B, K, N, d)` embeddings of the short-term behaviours.
        padding_mask: `(B, K, N)` bool, true for real behaviours.
        training: bool.

    Returns:
        `(h_S (B, d), tokens (B, K, N, d))`. h_S is the mean of the non-empty
        sessions' vectors h_S_k; with no short history it is a learned vector.
    """

    def build(self, x_shape, padding_mask_shape=None):
        folded = (None, x_shape[2], x_shape[3])
        super().build(folded, None)
        self.session_pool = MaskedPooling(dtype=self.dtype_policy, name="session_pool")
        self.session_pool.build(folded)
        self.pool = MaskedPooling(dtype=self.dtype_policy, name="pool")
        self.pool.build((None, x_shape[1], x_shape[3]))

    def call(self, x, padding_mask, training=None):
        K, N, d = x.shape[1], x.shape[2], x.shape[3]
        folded = ops.reshape(x, (-1, N, d))  # (B*K, N, d)
        folded_mask = ops.reshape(padding_mask, (-1, N))  # (B*K, N)
        tokens = super().call(folded, folded_mask, training=training)
        sessions = ops.reshape(self.session_pool(tokens, folded_mask), (-1, K, d))  # (B, K, d)
        present = ops.any(padding_mask, axis=-1)  # (B, K)
        h_s = self.pool(sessions, present)  # (B, d)
        return h_s, ops.reshape(tokens, (-1, K, N, d))

    def compute_output_shape(self, x_shape, padding_mask_shape=None):
        return (x_shape[0], x_shape[-1]), tuple(x_shape)
