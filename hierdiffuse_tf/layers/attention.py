"""Target attention: DIN's activation unit, and the readout that HierDiffuse pools with.

`ActivationUnit` is DIN's (Zhou et al., KDD 2018): an MLP over
`[key, query, key - query, key * query]` gives one unnormalised score per
behaviour. `TargetAttentionReadout` turns those scores into a pooling that
starts as the masked mean: weights `1 + score`, divided by the count of real
behaviours, with the score layer initialised to zero (SPEC 2b).
"""

from __future__ import annotations

import keras
from keras import ops

from hierdiffuse_tf.layers.encoders import MaskedPooling
from hierdiffuse_tf.utils import serializable


@serializable
class ActivationUnit(keras.layers.Layer):
    """DIN's activation unit: an MLP over `[key, query, key - query, key * query]`.

    Weights are not normalised by a softmax, as in DIN, so the pooled vector
    keeps the intensity of the user's interest.

    Args:
        units: tuple of int. Hidden widths (PReLU). Defaults to `(36,)`.
        score_initializer: initializer of the final score layer's kernel.
            `"zeros"` makes every score 0 at the start. Defaults to
            `"glorot_uniform"` (DIN's).
        normalize: bool. Divide the pooled vector by the count of real
            behaviours, so its scale does not grow with the history's length.
            Defaults to False (DIN's sum).
        **kwargs: base layer arguments.

    Call arguments:
        keys: `(B, L, d)` behaviour vectors.
        query: `(B, d)` target embedding.
        padding_mask: `(B, L)` bool.

    Returns:
        `(pooled (B, d), weights (B, L))`: the score-weighted sum of the keys
        (over their count with `normalize`), and the scores (0 at padding).

    Example:
    >>> unit = ActivationUnit(units=(16,))
    >>> pooled, weights = unit(keys, query, padding_mask)
    """

    def __init__(self, units=(36,), score_initializer="glorot_uniform", normalize: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.units = tuple(int(u) for u in units)
        self.score_initializer = keras.initializers.get(score_initializer)
        self.normalize = normalize

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
        self.score = keras.layers.Dense(1, kernel_initializer=self.score_initializer,
                                        dtype=self.dtype_policy, name="score")
        self.score.build((None, None, width))

    def scores(self, keys, query, padding_mask):
        """`(B, L)` scores, 0 at padding.

        The first layer is the Dense over `[k, q, k - q, k * q]`, computed
        without building that `(B, L, 4d)` tensor: with the kernel's four
        `(d, units)` blocks W1..W4 it is `k (W1 + W3) + q (W2 - W3) + (k q) W4`,
        where the query's term is computed once per row, not once per behaviour.
        """
        d = keys.shape[-1]
        h = None
        for i, (dense, act) in enumerate(self.hidden):
            if i == 0:
                w = ops.convert_to_tensor(dense.kernel)
                w1, w2, w3, w4 = (w[j * d:(j + 1) * d] for j in range(4))
                per_row = ops.matmul(query, w2 - w3) + ops.convert_to_tensor(dense.bias)  # (B, u)
                h = (ops.matmul(keys, w1 + w3) + ops.matmul(keys * ops.expand_dims(query, 1), w4)
                     + ops.expand_dims(per_row, 1))  # (B, L, u)
            else:
                h = dense(h)
            h = act(h)
        if h is None:  # No hidden layer: the score reads the concatenation itself.
            q = ops.broadcast_to(ops.expand_dims(query, 1), ops.shape(keys))
            h = ops.concatenate([keys, q, keys - q, keys * q], axis=-1)
        return ops.squeeze(self.score(h), -1) * ops.cast(padding_mask, keys.dtype)

    def call(self, keys, query, padding_mask):
        weights = self.scores(keys, query, padding_mask)  # (B, L)
        pooled = ops.sum(keys * ops.expand_dims(weights, -1), axis=1)
        if self.normalize:
            count = ops.sum(ops.cast(padding_mask, pooled.dtype), axis=1, keepdims=True)
            pooled = pooled / ops.maximum(count, 1.0)
        return pooled, weights

    def compute_output_shape(self, keys_shape, *args, **kwargs):
        return (keys_shape[0], keys_shape[-1]), tuple(keys_shape[:2])

    def get_config(self):
        return {**super().get_config(), "units": list(self.units), "normalize": self.normalize,
                "score_initializer": keras.initializers.serialize(self.score_initializer)}


@serializable
class TargetAttentionReadout(MaskedPooling):
    """Pools a behaviour sequence for one target; at initialisation, masked mean pooling.

    `pooled = sum_l (1 + a_l) x_l / count`, where `a_l` is an `ActivationUnit`
    score of behaviour l against the target, and count the number of real
    behaviours. The score layer starts at zero, so the readout starts as the
    mean and learns how far to move from it. A row with nothing to pool gets
    the learned `empty` vector, as in `MaskedPooling`.

    Args:
        units: tuple of int. Hidden widths of the activation unit. Defaults
            to `(36,)`.
        recency: bool. Add a learned bias per position to each score,
            `1 + a_l + b_l` (b starts at 0); sequences are left-padded, newest
            last, so a position is a recency. Defaults to False.
        **kwargs: base layer arguments.

    Call arguments:
        x: `(B, L, d)` behaviour vectors (an encoder's tokens).
        padding_mask: `(B, L)` bool, true for real behaviours.
        query: `(B, d)` target embedding.

    Returns:
        `(B, d)`.

    Example:
    >>> readout = TargetAttentionReadout(units=(16,))
    >>> h_long = readout(tokens, mask, query=target_embedding)
    """

    def __init__(self, units=(36,), recency: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.units = tuple(int(u) for u in units)
        self.recency = recency

    def build(self, x_shape, padding_mask_shape=None, query_shape=None):
        super().build(x_shape, padding_mask_shape)
        self.unit = ActivationUnit(self.units, score_initializer="zeros", dtype=self.dtype_policy,
                                   name="activation_unit")
        self.unit.build(x_shape)
        self.position_bias = (self.add_weight(shape=(x_shape[-2],), initializer="zeros",
                                              name="position_bias") if self.recency else None)

    def token_weights(self, x, padding_mask, query=None):
        """`(B, L)` weights `1 + a_l` at real behaviours, 0 at padding."""
        if query is None:
            raise ValueError("TargetAttentionReadout needs `query`, the target embedding")
        scores = self.unit.scores(x, query, padding_mask)
        if self.position_bias is not None:
            scores = scores + ops.cast(self.position_bias, scores.dtype)
        return ops.cast(padding_mask, x.dtype) * (1.0 + scores)

    def get_config(self):
        return {**super().get_config(), "units": list(self.units), "recency": self.recency}


def make_readout(kind: str, units=(36,), recency: bool = False, **kwargs) -> MaskedPooling:
    """`"target_attention"`: `TargetAttentionReadout`; `"mean"`: `MaskedPooling` (the paper's)."""
    if kind == "target_attention":
        return TargetAttentionReadout(units, recency=recency, **kwargs)
    if kind == "mean":
        return MaskedPooling(**kwargs)
    raise ValueError(f"`readout` must be 'target_attention' or 'mean'. Received: {kind!r}")
