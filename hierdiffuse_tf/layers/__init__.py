"""The public layers: each runs on every Keras backend (the model math is `keras.ops`).

- `ActivationUnit` (DIN's target attention) and `TargetAttentionReadout`;
- `AUGRUCell` (DIEN's interest evolution);
- `SequenceEncoder` (f_L, f_S) and `MaskedPooling`;
- `MLPDenoiser`, `TransformerDenoiser` and `TimeEmbedding` (the denoiser f_theta);
- `GuidedDenoiser` with SGD and CFG guidance (`sgd_combine`, `cfg_combine`);
- `FeatureEmbedding` and `CTRHead`.
"""

from hierdiffuse_tf.layers.attention import (  # noqa: F401
    ActivationUnit, TargetAttentionReadout, make_readout)
from hierdiffuse_tf.layers.augru import AUGRUCell  # noqa: F401
from hierdiffuse_tf.layers.ctr_head import CTRHead  # noqa: F401
from hierdiffuse_tf.layers.embedding import FeatureEmbedding, sanitize_ids  # noqa: F401
from hierdiffuse_tf.layers.encoders import MaskedPooling, SequenceEncoder, masked_mean  # noqa: F401
from hierdiffuse_tf.diffusion.denoiser import (  # noqa: E402,F401
    MLPDenoiser, TimeEmbedding, TransformerDenoiser)
from hierdiffuse_tf.guidance.guidance import GuidedDenoiser, cfg_combine, sgd_combine  # noqa: E402,F401
