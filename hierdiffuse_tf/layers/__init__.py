"""Layers shared by HierDiffuse and the baselines."""

from hierdiffuse_tf.layers.ctr_head import CTRHead  # noqa: F401
from hierdiffuse_tf.layers.embedding import FeatureEmbedding, sanitize_ids  # noqa: F401
from hierdiffuse_tf.layers.encoders import (  # noqa: F401
    LongTermEncoder, MaskedPooling, SequenceEncoder, ShortTermEncoder, masked_mean)
