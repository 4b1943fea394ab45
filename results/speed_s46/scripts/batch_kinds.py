"""Why `bench train`'s step is faster than the step on a real batch (docs/performance.md, "A third VM").

In one process, alternating rounds of 20 calls of each compiled training step (`paired_step_ms`):
HierDiffuse and DIN, each built for ml-100k from seed 0 and compiled as `train` compiles it
(`clipnorm=1.0`), on a real ml-100k training batch of 256 (the batch of `paired_step.py`) and on
`bench train`'s random batch of the same config (`example_features`, 40 % of the sessions holding
behaviours); and each compiled without `clipnorm` (as `bench train` compiles it) on the real batch.
Argument 1: the number of rounds. Prints `{variant: [best round ms, median round ms]}` as JSON.
"""
import json
import sys

import keras
import numpy as np
import tensorflow as tf

from hierdiffuse_tf import training
from hierdiffuse_tf.bench.training import TRAINING_SESSION_SHARE, paired_step_ms
from hierdiffuse_tf.datasets import pipeline
from hierdiffuse_tf.models.base import example_features

data = pipeline.open_dataset("movielens_100k_ctr")
real = list(data.batches("train", 256, shuffle=True, seed=0, drop_remainder=True).take(4))[3]
models, batches = {}, {}
for name in ("hierdiffuse", "din"):
    cls, model_config, train_config = training.resolve_configs(name, data)
    features = example_features(model_config, 256, session_share=TRAINING_SESSION_SHARE)
    random = ({k: tf.constant(v, real[0][k].dtype) for k, v in features.items() if k in real[0]},
              tf.constant(np.random.default_rng(0).integers(0, 2, 256), real[1].dtype))
    for label, batch, clip in (("real", real, True), ("random", random, True), ("real, no clipnorm", real, False)):
        keras.utils.set_random_seed(0)
        model = cls(model_config)
        model(batch[0], training=False)
        if clip:
            training.compile_model(model, train_config)
        else:
            model.compile(optimizer=keras.optimizers.Adam(train_config.learning_rate),
                          jit_compile=training.xla_training(cls))
        models[f"{name}, {label}"], batches[f"{name}, {label}"] = model, batch
print(json.dumps(paired_step_ms(models, real, int(sys.argv[1]) if len(sys.argv) > 1 else 6, batches=batches)))
