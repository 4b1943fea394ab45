"""The first `fit` call of each model, its optimizer's slots made in the step's first trace
(Keras' own `compile`, as before 2026-12-07) or before it (`CTRModel.compile` now): seconds for
a 2-step `fit` on one real ml-100k batch of 64 (plain graph, as the test suite trains), the
count of traces of the training step, and whether the initial weights and the loss agree.

    python results/speed_s40/scripts/first_fit.py hierdiffuse,din,dien,dreamrec,diffurec,avg_pool_dnn
"""
import os
import sys
import time

os.environ.setdefault("HIERDIFFUSE_XLA_TRAINING", "0")
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from hierdiffuse_tf import training  # noqa: E402
from hierdiffuse_tf.datasets import pipeline  # noqa: E402

data = pipeline.open_dataset("movielens_100k_ctr")
batch = list(data.batches("train", 64, shuffle=True, seed=0, drop_remainder=True).take(1))[0]
for name in sys.argv[1].split(","):
    runs = {}
    for how in ("slots in the first trace", "slots before fit"):
        keras.utils.set_random_seed(0)
        cls, model_config, train_config = training.resolve_configs(name, data, overrides=[])
        model = cls(model_config)
        optimizer = keras.optimizers.Adam(train_config.learning_rate, clipnorm=train_config.clipnorm)
        if how == "slots before fit":
            model.compile(optimizer=optimizer)
        else:  # Keras' own compile: the weights built, the optimizer not.
            model(model.example_inputs(), training=False)
            keras.Model.compile(model, optimizer=optimizer)
        initial = [v.numpy().copy() for v in model.trainable_variables]
        traces = []
        step = model.train_step
        model.train_step = lambda d, step=step: traces.append(1) or step(d)
        start = time.perf_counter()
        loss = model.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=2, epochs=1,
                         verbose=0).history["loss"][-1]
        runs[how] = (time.perf_counter() - start, len(traces), loss, initial)
    (lazy_s, lazy_traces, lazy_loss, lazy_init), (pre_s, pre_traces, pre_loss, pre_init) = runs.values()
    same = all(np.array_equal(a, b) for a, b in zip(lazy_init, pre_init))
    print(f"{name}: first fit {lazy_s:.1f} s ({lazy_traces} traces) -> {pre_s:.1f} s ({pre_traces}); "
          f"same initial weights: {same}; loss {lazy_loss:.8f} -> {pre_loss:.8f}", flush=True)
