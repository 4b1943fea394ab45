"""`steps_per_execution` through `fit` on ml-100k's cached training split (full batches):
ms per step, best of 3 fits of 160 steps, per `model:steps_per_execution` variant; then, with
`--exact`, whether 8 steps per call trains HierDiffuse as 1 does (the losses of two short
epochs and the largest weight difference). docs/performance.md ("Left to do") quotes

    python results/ml100k_skip/scripts/steps_per_execution.py "hierdiffuse:1,hierdiffuse:8,din:1,din:8"
    python results/ml100k_skip/scripts/steps_per_execution.py --exact

The printed output was not kept.
"""
import sys
import time

import keras
import numpy as np

from hierdiffuse_tf import training
from hierdiffuse_tf.datasets import pipeline

data = pipeline.open_dataset("movielens_100k_ctr")


def compiled(name: str, steps_per_execution: int, jit: bool):
    cls, model_config, _ = training.resolve_configs(name, data)
    keras.utils.set_random_seed(0)
    model = cls(model_config)
    model(model.example_inputs(), training=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit,
                  steps_per_execution=steps_per_execution)
    return model


if sys.argv[1] == "--exact":
    weights = {}
    for spe in (1, 8):
        model = compiled("hierdiffuse", spe, True)
        history = model.fit(data.batches("train", 256, shuffle=True, seed=0, drop_remainder=True),
                            epochs=2, steps_per_epoch=40, verbose=0)
        weights[spe] = model.get_weights()
        print(spe, history.history["loss"])
    print("largest weight difference", max(float(np.abs(a - b).max()) for a, b in zip(weights[1], weights[8])))
else:
    batches = data.batches("train", 256, shuffle=True, seed=0, drop_remainder=True, cache=True)
    for _ in batches:  # Fill the cache, as `train`'s first epoch does.
        pass
    for spec in sys.argv[1].split(","):
        name, spe = spec.split(":")
        model = compiled(name, int(spe), training.xla_training(training.get_model_class(name)))
        model.fit(batches, epochs=1, steps_per_epoch=48, verbose=0)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            model.fit(batches, epochs=1, steps_per_epoch=160, verbose=0)
            best = min(best, (time.perf_counter() - start) / 160 * 1e3)
        print(spec, round(best, 1), "ms per step", flush=True)
