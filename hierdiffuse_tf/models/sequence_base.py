"""`SequenceCTRModel`: the base of the Table 1 baselines.

The baselines read one behaviour sequence: the long-term behaviours followed by
the K sessions, oldest first (length L = M + K N), with the same item and
category embedding layout (`embed_dim`, `embed_combiner`) and the same CTR head
as HierDiffuse.
"""

from __future__ import annotations

from keras import ops

from hierdiffuse_tf.config import ModelConfig
from hierdiffuse_tf.layers import CTRHead, FeatureEmbedding
from hierdiffuse_tf.models.base import CTRModel


def behaviour_sequence(features: dict, key: str):
    """`long_<key>` then the flattened `short_<key>`: `(B, M + K N)`, oldest first."""
    short = features[f"short_{key}"]
    flat = ops.reshape(short, (-1, short.shape[1] * short.shape[2]))
    long = features[f"long_{key}"]
    return ops.concatenate([long, ops.cast(flat, long.dtype)], axis=1)


def embedded_sequence(embedding, features: dict):
    """`(embeddings (B, L, d), padding mask (B, L))` of `behaviour_sequence`, through `embedding`."""
    items = behaviour_sequence(features, "items")
    return embedding(items, behaviour_sequence(features, "cats")), items > 0


class SequenceCTRModel(CTRModel):
    """Shared embedding, sequence and head of the baselines; subclasses implement `forward`
    and set `config_cls` (a `ModelConfig` with their own fields)."""

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.embedding = FeatureEmbedding(c.num_items, c.num_cats, c.embed_dim, c.embed_combiner,
                                          c.num_hash_buckets, name="embedding")
        self.head = CTRHead(c.head_units, c.dropout, c.head_cross_layers, name="head")

    @property
    def sequence_length(self) -> int:
        return self.config.max_long + self.config.num_sessions * self.config.session_len

    def sequence(self, features):
        """`(embeddings (B, L, d), padding mask (B, L), target embedding (B, d))`."""
        target = self.embedding(features["target_item"], features["target_cat"])
        return (*embedded_sequence(self.embedding, features), target)
