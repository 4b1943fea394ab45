"""Layers shared by HierDiffuse and the baselines; each runs on every Keras backend."""

from hierdiffuse_tf.layers.attention import (  # noqa: F401
    ActivationUnit, TargetAttentionReadout, make_readout)
from hierdiffuse_tf.layers.ctr_head import CTRHead  # noqa: F401
from hierdiffuse_tf.layers.embedding import FeatureEmbedding, sanitize_ids  # noqa: F401
from hierdiffuse_tf.layers.encoders import MaskedPooling, SequenceEncoder, masked_mean  # noqa: F401
