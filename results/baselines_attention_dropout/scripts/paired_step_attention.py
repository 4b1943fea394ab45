"""The compiled training step called directly on one real ml-100k training batch of 256, several
variants in one process, alternating rounds of 20 steps (results/speed_s38/scripts/paired_step.py);
prints `{variant: [best round ms, median round ms]}` as JSON.

A variant is `model[:key=value...]`. The pseudo-setting `key_mask=1` keeps the dropout over the
sequence transformer's attention probabilities but draws its mask once per key, `(B, heads, 1, L)`,
shared by every query, where Keras draws one per probability, `(B, heads, L, L)`: it separates the
random mask's cost from the rest of Keras' attention path with dropout. Argument 2 is the number
of rounds. Used by docs/performance.md ("The baselines' attention dropout"):

    python results/baselines_attention_dropout/scripts/paired_step_attention.py "hierdiffuse,dreamrec,dreamrec:encoder_attention_dropout=false,dreamrec:key_mask=1,diffurec,diffurec:encoder_attention_dropout=false" 4
"""
import json
import sys

import keras

from hierdiffuse_tf.bench.training import paired_step_variants
from hierdiffuse_tf.datasets import pipeline


def key_mask(model):
    for block in model.encoder.blocks:
        attention = block._self_attention_layer
        attention._tracker.unlock()
        attention._dropout_layer = keras.layers.Dropout(
            attention._dropout, noise_shape=(None, None, 1, None), seed=attention.seed)
        attention._tracker.lock()


data = pipeline.open_dataset("movielens_100k_ctr")
batch = list(data.batches("train", 256, shuffle=True, seed=0, drop_remainder=True).take(4))[3]
print(json.dumps(paired_step_variants(data, sys.argv[1].split(","), batch, int(sys.argv[2]),
                                      patches={"key_mask": key_mask})))
