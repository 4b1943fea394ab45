"""DIEN (Zhou et al., AAAI 2019): interest extraction and evolution (Table 1).

* Interest extractor: a GRU over the behaviour sequence. Its auxiliary loss
  asks each hidden state h_t to tell the next real behaviour e_{t+1} from a
  negative one (the same position of another example in the batch).
* Interest evolution: attention between each h_t and the target, then an
  AUGRU, a GRU whose update gate is scaled by the attention score, so a
  behaviour with zero attention leaves the interest state untouched.
"""

from __future__ import annotations

import functools

import keras
from keras import ops

from hierdiffuse_tf.config import DIENConfig
from hierdiffuse_tf.layers.augru import AUGRUCell  # noqa: F401  (also public here)
from hierdiffuse_tf.layers.next_behaviour import next_behaviour_loss, pair_logits, pair_scorer
from hierdiffuse_tf.models.base import Forward
from hierdiffuse_tf.models.sequence_base import SequenceCTRModel
from hierdiffuse_tf.utils import serializable


@serializable
class DIEN(SequenceCTRModel):
    """Deep Interest Evolution Network on the shared features and head."""

    config_cls = DIENConfig
    log_names = ("aux",)

    def __init__(self, config: DIENConfig, **kwargs):
        super().__init__(config, **kwargs)
        d = config.embed_dim
        self.extractor = keras.layers.GRU(d, return_sequences=True, name="interest_extractor")
        self.attention = keras.layers.Dense(d, use_bias=False, name="attention")
        self.evolution = keras.layers.RNN(AUGRUCell(d, name="augru_cell"), name="interest_evolution")
        self.aux_net = pair_scorer(d, "aux")

    def forward(self, features, training=False, labels=None) -> Forward:
        seq, mask, target = self.sequence(features)
        states = self.extractor(seq, mask=mask, training=training)  # (B, L, d)
        scores = ops.sum(self.attention(states) * ops.expand_dims(target, 1), axis=-1)  # (B, L)
        scores = ops.where(mask, scores, -1e9)
        attention = ops.softmax(scores, axis=-1) * ops.cast(mask, scores.dtype)
        evolved = self.evolution(ops.concatenate([states, ops.expand_dims(attention, -1)], axis=-1),
                                 mask=mask, training=training)  # (B, d)
        logit = self.head(evolved, target, training=training)
        if not training:
            return Forward(logit=logit)
        # The extractor's auxiliary loss: each h_t tells e_{t+1} from another example's.
        aux = next_behaviour_loss(functools.partial(pair_logits, self.aux_net), states, seq, mask)
        return Forward(logit=logit, aux_loss=self.config.aux_loss_weight * aux, logs={"aux": aux})
