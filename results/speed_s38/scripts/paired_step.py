"""The compiled training step called directly, on one real ml-100k training batch of 256, several
model variants in one process, alternating rounds of 20 steps; prints `{variant: [best round ms,
median round ms]}` as JSON (the method of results/ml100k_skip/scripts/direct_step.py).

A variant is `model[:key=value...]`; the pseudo-setting `stacked_denoiser=1` makes the MLP denoiser
run every condition through its whole network (`Denoiser.call_conditions`, the code before the
shared first term). Argument 2 is the number of rounds. docs/performance.md quotes

    python results/speed_s38/scripts/paired_step.py "hierdiffuse,hierdiffuse:stacked_denoiser=1,din" 6
"""
import json
import sys
import types

import keras
import numpy as np
import tensorflow as tf

from hierdiffuse_tf import training
from hierdiffuse_tf.bench.training import direct_step_ms
from hierdiffuse_tf.datasets import pipeline
from hierdiffuse_tf.diffusion.denoiser import Denoiser

data = pipeline.open_dataset("movielens_100k_ctr")
batch = list(data.batches("train", 256, shuffle=True, seed=0, drop_remainder=True).take(4))[3]
steps = {}
for spec in sys.argv[1].split(","):
    name, *sets = spec.split(":")
    stacked = "stacked_denoiser=1" in sets
    sets = [s for s in sets if s != "stacked_denoiser=1"]
    cls, model_config, train_config = training.resolve_configs(name, data, overrides=sets)
    keras.utils.set_random_seed(0)
    model = cls(model_config)
    if stacked:
        denoiser = model.guided.denoiser
        denoiser.call_conditions = types.MethodType(Denoiser.call_conditions, denoiser)
    model = training.compile_model(model, train_config)
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=3, epochs=1, verbose=0)
    steps[spec] = (model.train_function, iter(tf.data.Dataset.from_tensors(batch).repeat()))
rounds = {spec: [] for spec in steps}
for _ in range(int(sys.argv[2])):
    for spec, (step, batches) in steps.items():
        rounds[spec].append(direct_step_ms(step, batches, 20)[0])
print(json.dumps({spec: [round(min(ms), 1), round(float(np.median(ms)), 1)] for spec, ms in rounds.items()}))
