"""DIN (Zhou et al., KDD 2018): target attention over all behaviours (Table 1)."""

from __future__ import annotations

from hierdiffuse_tf.config import DINConfig
from hierdiffuse_tf.layers.attention import ActivationUnit  # noqa: F401  (also public here)
from hierdiffuse_tf.models.base import Forward
from hierdiffuse_tf.models.sequence_base import SequenceCTRModel
from hierdiffuse_tf.utils import serializable


@serializable
class DIN(SequenceCTRModel):
    """Deep Interest Network: the activation unit pools the behaviours for each target."""

    config_cls = DINConfig
    jit_train = True  # Measured faster under XLA on CPU (docs/performance.md).

    def __init__(self, config: DINConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.attention = ActivationUnit(config.attention_units, normalize=config.attention_normalize,
                                        name="attention")

    def forward(self, features, training=False, labels=None) -> Forward:
        seq, mask, target = self.sequence(features)
        user, _ = self.attention(seq, target, mask)  # (B, d)
        return Forward(logit=self.head(user, target, training=training))
