"""The compiled training step called directly (`bench train`'s `direct_step_ms`), on one real
ml-100k training batch of 256, several model variants in one process, alternating rounds of
20 steps; prints `{variant: [best round ms, median round ms]}` as JSON.

docs/performance.md ("f_S over the non-empty sessions") quotes two runs of

    python results/ml100k_skip/scripts/direct_step.py "hierdiffuse,hierdiffuse:skip_empty_sessions=false,din" 6

(the second with 4 rounds), and the parts removed one at a time from

    python results/ml100k_skip/scripts/direct_step.py "hierdiffuse,hierdiffuse:encoder_layers=0,hierdiffuse:readout=mean,hierdiffuse:sampler=none,hierdiffuse:dropout=0.0" 4

A variant is `model[:key=value...]`; argument 2 is the number of rounds. Needs the prepared
movielens_100k_ctr. The printed output was not kept. Those runs timed the default of the time,
2 heads in f_S and 128 denoiser units: add `:encoder_heads=2:denoiser_units=128` to each
`hierdiffuse` variant to time that model now.
"""
import json
import sys

import keras
import tensorflow as tf

from hierdiffuse_tf import training
from hierdiffuse_tf.bench.training import paired_step_ms
from hierdiffuse_tf.datasets import pipeline

data = pipeline.open_dataset("movielens_100k_ctr")
batch = list(data.batches("train", 256, shuffle=True, seed=0, drop_remainder=True).take(4))[3]
share = tf.reduce_mean(tf.cast(tf.reduce_any(batch[0]["short_items"] > 0, -1), tf.float32))
print("sessions holding a behaviour:", float(share))
models = {}
for spec in sys.argv[1].split(","):
    name, *sets = spec.split(":")
    cls, model_config, train_config = training.resolve_configs(name, data, overrides=sets)
    keras.utils.set_random_seed(0)
    models[spec] = training.compile_model(cls(model_config), train_config)
print(json.dumps(paired_step_ms(models, batch, int(sys.argv[2]))))
