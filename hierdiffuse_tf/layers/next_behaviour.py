"""DIEN's auxiliary loss: each state tells the next real behaviour from a negative.

DIEN (Zhou et al., AAAI 2019) supervises its interest extractor with it: state
h_t, which has read the behaviours up to t, must score e_{t+1} (label 1) above
the behaviour at the same position of another row of the batch (label 0).
HierDiffuse can add the same loss on its embeddings (`next_behaviour_weight`),
with the mean of the behaviours up to t as the state (`prefix_mean`).
"""

from __future__ import annotations

import keras
from keras import ops


def prefix_mean(seq, mask):
    """`(B, L, d)`: at each t, the mean of the real behaviours at positions <= t (0 before the first)."""
    weights = ops.cast(mask, seq.dtype)
    total = ops.cumsum(seq * ops.expand_dims(weights, -1), axis=1)
    count = ops.cumsum(weights, axis=1)
    return total / ops.expand_dims(ops.maximum(count, 1.0), -1)


def pair_scorer(dim: int, prefix: str) -> list:
    """The two Dense layers of `pair_logits` (`<prefix>_hidden`, sigmoid, width `dim`;
    `<prefix>_logit`), built now for `[state, behaviour]` pairs of width `2 dim`: only
    training calls them, and Keras (under tf.distribute) needs every weight before the
    first step."""
    hidden = keras.layers.Dense(dim, activation="sigmoid", name=f"{prefix}_hidden")
    logit = keras.layers.Dense(1, name=f"{prefix}_logit")
    hidden.build((None, 2 * dim))
    logit.build((None, dim))
    return [hidden, logit]


def pair_logits(layers, states, behaviours):
    """`(..., L)` logits of an MLP (`layers`, the last of width 1) over `[state, behaviour]` pairs:
    the scorer that `next_behaviour_loss` takes, as DIEN and HierDiffuse build it."""
    h = ops.concatenate([states, behaviours], axis=-1)
    for layer in layers:
        h = layer(h)
    return ops.squeeze(h, -1)


def next_behaviour_loss(score, states, seq, mask):
    """BCE of telling e_{t+1} from another row's e_{t+1}, averaged over valid pairs.

    Args:
        score: `(states (B, L-1, d), behaviours (B, L-1, d)) -> logits (B, L-1)`.
        states: `(B, L, d)` states; h_t may have read the behaviours up to t, never later.
        seq: `(B, L, d)` behaviour embeddings, oldest first.
        mask: `(B, L)` bool, true for real behaviours.

    Returns:
        A scalar; pairs where h_t, e_{t+1} or the negative is padding do not count.
    """
    negatives = ops.roll(seq, 1, axis=0)  # Another row's behaviours: the negatives.
    negative_mask = ops.roll(mask, 1, axis=0)
    h, nxt, neg = states[:, :-1], seq[:, 1:], negatives[:, 1:]
    valid = ops.cast(mask[:, :-1] & mask[:, 1:] & negative_mask[:, 1:], "float32")  # (B, L-1)
    logits = [ops.cast(score(h, other), "float32") for other in (nxt, neg)]  # The loss in float32.
    pos_loss = ops.binary_crossentropy(ops.ones_like(valid), logits[0], from_logits=True)
    neg_loss = ops.binary_crossentropy(ops.zeros_like(valid), logits[1], from_logits=True)
    return ops.sum((pos_loss + neg_loss) * valid) / ops.maximum(ops.sum(valid), 1.0)
