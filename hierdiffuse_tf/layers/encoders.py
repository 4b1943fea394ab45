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


def masked_mean(x, mask, weights=None):
    """Mean of `x` over its rows (axis -2) where `mask` is true, and the count of such rows.

    Args:
        x: `(..., L, d)` values.
        mask: `(..., L)` booleans.
        weights: `(..., L)` weights of the rows in the sum (0 at masked rows);
            the mask's 0/1 by default. The sum is still divided by the count.

    Returns:
        `(mean (..., d), count (...))`; the mean is 0 where the count is 0.
    """
    count = ops.sum(ops.cast(mask, x.dtype), axis=-1)
    weights = ops.cast(mask, x.dtype) if weights is None else weights
    total = ops.sum(x * ops.expand_dims(weights, -1), axis=-2)
    return total / ops.expand_dims(ops.maximum(count, 1.0), -1), count


@serializable
class MaskedPooling(keras.layers.Layer):
    """Masked mean pooling with a learned vector for rows that have nothing to pool.

    Call arguments:
        x: `(..., L, d)` float tensor.
        padding_mask: `(..., L)` bool tensor.
        query: ignored. Accepted so that every readout takes the same
            arguments (see `attention.TargetAttentionReadout`).
        return_weights: bool. Also return the token weights, so that other
            poolings of the same tokens (`pool_weighted`) can reuse them.

    Returns:
        `(..., d)`: the mean of the unmasked rows, or the learned `empty`
        vector where every row is masked; with `return_weights`, also the
        `(..., L)` weights.

    Example:
    >>> pool = MaskedPooling()
    >>> h = pool(tokens, padding_mask)  # (B, d)
    """

    def build(self, x_shape, padding_mask_shape=None, query_shape=None):
        self.empty = self.add_weight(shape=(x_shape[-1],), initializer="zeros", name="empty")

    def pool_weighted(self, x, weights, padding_mask):
        """`sum_l weights_l x_l / count`, or `empty` where the count of real rows is 0."""
        pooled, count = masked_mean(x, padding_mask, weights=weights)
        # `convert_to_tensor`: JAX no longer takes a Keras variable in `jnp.where`.
        return ops.where(ops.expand_dims(count > 0, -1), pooled, ops.convert_to_tensor(self.empty))

    def token_weights(self, x, padding_mask, query=None):
        """`(..., L)` pooling weights before the division by the count: the mask here."""
        return ops.cast(padding_mask, x.dtype)

    def call(self, x, padding_mask, query=None, return_weights=False):
        weights = self.token_weights(x, padding_mask, query)
        pooled = self.pool_weighted(x, weights, padding_mask)
        return (pooled, weights) if return_weights else pooled


@serializable
class SequenceEncoder(keras.layers.Layer):
    """Position embeddings plus a stack of keras-hub `TransformerEncoder` blocks.

    Args:
        sequence_length: int. The maximum sequence length L.
        num_layers: int. Transformer blocks; 0 leaves the position-embedded
            behaviours as they are. Defaults to 1.
        num_heads: int. Attention heads. Defaults to 2.
        intermediate_dim: int. Feed-forward width. Defaults to 64.
        dropout: float. Dropout rate. Defaults to 0.1.
        gated: bool. ReZero gate: return `x + g (T(x + pos) - x)` with a
            learned scalar g that starts at 0. Defaults to False (the plain
            stack, `T(x + pos)`).
        chunk_size: int. If > 0, the blocks attend within consecutive chunks
            of this many behaviours, after the position embeddings of the
            whole sequence are added; where it does not divide the length,
            the first (oldest) chunk is shorter (padded in front, the padding
            masked), and a chunk longer than the sequence is the sequence.
            Attention then costs L c instead of L^2, and XLA compiles it well
            on CPU. Defaults to 0 (attention over the whole sequence).
        skip_empty: bool. In training, run the blocks over half of the
            folded sequences (say, sessions) whenever the batch's non-empty
            ones fit in that half, and over all of them otherwise. An empty
            sequence comes out as zeros either way, so the result is the
            same; the dropout masks are drawn over fewer rows (another random
            stream). A training step whose batch size is not static (a `fit`
            on batches with a short last one) runs over every row: XLA cannot
            compile the gradient of that branch there. Scoring always runs
            over every row, so a scoring graph (and the SavedModel) holds no
            `cond` and one copy of the blocks. TensorFlow only: other backends
            run over every row (under JAX, the dropout seeds drawn inside the
            `cond` would escape the trace). Defaults to False.
        attention_dropout: bool. Whether the blocks drop out their attention
            probabilities at the `dropout` rate, as keras-hub's block does.
            False keeps the blocks' other dropouts (after the attention and
            after the feed-forward) and drops none of the `(rows, heads, L, L)`
            probabilities. Keras then computes the attention with
            `ops.dot_product_attention` instead of its own path with a dropout
            layer, which made a training step over 140 behaviours 22-30 %
            cheaper under XLA on CPU (docs/performance.md). Defaults to True.
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
                 intermediate_dim: int = 64, dropout: float = 0.1, gated: bool = False,
                 chunk_size: int = 0, skip_empty: bool = False, attention_dropout: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        if sequence_length < 1 or num_layers < 0 or num_heads < 1:
            raise ValueError("`sequence_length` and `num_heads` must be >= 1, `num_layers` >= 0. "
                             f"Received: {sequence_length}, {num_layers}, {num_heads}")
        if chunk_size < 0:
            raise ValueError(f"`chunk_size` must be >= 0. Received: `chunk_size={chunk_size}`")
        self.chunk_size = chunk_size
        self.skip_empty = skip_empty
        self.attention_dropout = attention_dropout
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
        if self.chunk_size:
            folded = (None, min(self.chunk_size, x_shape[-2]), x_shape[-1])
        self.blocks = []
        for i in range(self.num_layers):
            block = keras_hub.layers.TransformerEncoder(
                self.intermediate_dim, self.num_heads, dropout=self.dropout,
                normalize_first=True, dtype=self.dtype_policy, name=f"block_{i}")
            block.build(folded)
            if not self.attention_dropout:
                # keras-hub's block gives its attention layer its one `dropout` rate, and Keras'
                # `MultiHeadAttention` reads the rate at each call; the layer keeps no weights
                # that depend on it.
                block._self_attention_layer._dropout = 0.0
            self.blocks.append(block)
        if self.gated:
            self.gate = self.add_weight(shape=(), initializer="zeros", name="gate")

    def call(self, x, padding_mask, training=None):
        shape = ops.shape(x)
        L, d = x.shape[-2], x.shape[-1]
        e = ops.reshape(x, (-1, L, d))  # (B [K], L, d): sessions fold into the batch.
        mask = ops.reshape(padding_mask, (-1, L))
        h = e + self.positions(e)
        block_mask = mask
        chunk = min(self.chunk_size, L)
        pad = -L % chunk if chunk else 0
        if pad:  # The oldest chunk is shorter (the newest behaviours come last): pad it in front.
            h = ops.pad(h, [[0, 0], [pad, 0], [0, 0]])
            block_mask = ops.pad(mask, [[0, 0], [pad, 0]], constant_values=False)
        if chunk:  # Chunks fold into the batch too; positions stay the whole sequence's.
            h = ops.reshape(h, (-1, chunk, d))
            block_mask = ops.reshape(block_mask, (-1, chunk))
        # Training only, with a static row count (a `fit` step whose last batch is short has
        # none), on TensorFlow: under JAX, the dropout seeds that a `cond` branch draws escape
        # the trace (`UnexpectedTracerError`), so the blocks run over every row there.
        if (self.skip_empty and self.blocks and training and h.shape[0] is not None
                and keras.backend.backend() == "tensorflow"):
            h = self._blocks_over_nonempty(h, block_mask, training)
        else:
            h = self._blocks_over(h, block_mask, training)
        h = ops.reshape(h, (-1, L + pad, d))
        if pad:
            h = h[:, pad:]
        if self.gated:
            h = e + ops.cast(self.gate, h.dtype) * (h - e)
        h = h * ops.expand_dims(ops.cast(mask, h.dtype), -1)
        return ops.reshape(h, shape)

    def _blocks_over(self, h, mask, training):
        for block in self.blocks:
            h = block(h, padding_mask=mask, training=training)
        return h

    def _blocks_over_nonempty(self, h, mask, training):
        """`_blocks_over` the first half of the rows, the non-empty ones sorted there,
        when they all fit (zeros for the rest); over every row otherwise.

        Under XLA every size is fixed when the step compiles, so the half is a
        fixed capacity and one `cond` picks the branch. A batch of sessions is
        mostly empty: about 40 % of ml-100k's and ml-1m's training sessions hold a
        behaviour, and no training batch of 256 examples held more than 44 %
        (docs/performance.md).
        """
        rows = ops.shape(h)[0]
        present = ops.any(mask, axis=-1)  # (R,)
        order = ops.argsort(ops.cast(ops.logical_not(present), "int32"))  # Non-empty rows first.
        h, mask = ops.take(h, order, axis=0), ops.take(mask, order, axis=0)
        half = (rows + 1) // 2

        def over_half():
            return ops.concatenate([self._blocks_over(h[:half], mask[:half], training),
                                    ops.zeros_like(h[half:])], axis=0)

        fits = ops.sum(ops.cast(present, "int32")) <= half
        h = ops.cond(fits, over_half, lambda: self._blocks_over(h, mask, training))
        return ops.take(h, ops.argsort(order), axis=0)

    def compute_output_shape(self, x_shape, padding_mask_shape=None):
        return tuple(x_shape)

    def get_config(self):
        return {**super().get_config(), "sequence_length": self.sequence_length,
                "num_layers": self.num_layers, "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim, "dropout": self.dropout,
                "gated": self.gated, "chunk_size": self.chunk_size, "skip_empty": self.skip_empty,
                "attention_dropout": self.attention_dropout}
