"""Avg-Pooling DNN: the mean of all behaviour embeddings, the target, then an MLP (Table 1)."""

from __future__ import annotations

import keras
import keras_rs
from keras import ops

from hierdiffuse_tf.config import ModelConfig
from hierdiffuse_tf.layers import CTRHead, sanitize_ids
from hierdiffuse_tf.models.base import CTRModel, Forward
from hierdiffuse_tf.models.sequence_base import behaviour_sequence
from hierdiffuse_tf.utils import serializable


@serializable
class AvgPoolDNN(CTRModel):
    """Mean-pooled behaviours with keras-rs `EmbedReduce` tables, then the shared head.

    The item and category tables are `keras_rs.layers.EmbedReduce` (embed, then
    reduce with a weighted sum; the weights are the padding mask and the sum is
    divided by the count, so padding never enters the mean). The target is
    embedded by the same tables, unreduced. `embed_combiner` joins the two
    tables as `FeatureEmbedding` does: "sum" adds two tables of width d,
    "concat" joins two of width d / 2.
    """

    jit_train = True  # Measured faster under XLA on CPU (docs/performance.md).

    config_cls = ModelConfig

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        init = keras.initializers.RandomNormal(stddev=0.05)
        width = c.embed_dim if c.embed_combiner == "sum" else c.embed_dim // 2
        self.items = keras_rs.layers.EmbedReduce(c.item_vocab, width, combiner="sum",
                                                 embeddings_initializer=init, name="item_table")
        self.cats = keras_rs.layers.EmbedReduce(c.num_cats, width, combiner="sum",
                                                embeddings_initializer=init, name="cat_table")
        self.head = CTRHead(c.head_units, c.dropout, c.head_cross_layers, name="head")

    def embed(self, items, cats, weights=None):
        c = self.config
        items = self.items(sanitize_ids(items, c.item_vocab, c.num_hash_buckets), weights)
        cats = self.cats(sanitize_ids(cats, c.num_cats), weights)
        return items + cats if c.embed_combiner == "sum" else ops.concatenate([items, cats], axis=-1)

    def forward(self, features, training=False, labels=None) -> Forward:
        items, cats = behaviour_sequence(features, "items"), behaviour_sequence(features, "cats")
        weights = ops.cast(items > 0, "float32")  # (B, L)
        count = ops.maximum(ops.sum(weights, axis=1, keepdims=True), 1.0)
        pooled = self.embed(items, cats, weights) / count  # (B, d)
        target = self.embed(features["target_item"], features["target_cat"])  # (B, d)
        return Forward(logit=self.head(pooled, target, training=training))
