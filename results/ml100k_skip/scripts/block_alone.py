"""One keras-hub `TransformerEncoder` at f_S's shape, forward and backward under XLA, alone:
median ms of 60 calls, with the rows that f_S's skip leaves (512 of a batch's 1024 sessions)
and all of them, with and without dropout. docs/performance.md ("Left to do") quotes about
14 ms for 512 rows at dropout 0.2 from

    python results/ml100k_skip/scripts/block_alone.py

The printed output was not kept.
"""
import time

import keras_hub
import numpy as np
import tensorflow as tf

from hierdiffuse_tf import xla_random  # Importing the package pins Keras' random algorithms.


def block_ms(rows: int, dropout: float) -> float:
    block = keras_hub.layers.TransformerEncoder(64, 2, dropout=dropout, normalize_first=True)
    x, mask = tf.random.normal((rows, 10, 32)), tf.random.uniform((rows, 10)) < 0.7
    block(x, padding_mask=mask)

    @tf.function(jit_compile=True)
    def step(x, mask):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(block(x, padding_mask=mask, training=True)))
        return tape.gradient(loss, block.trainable_variables)

    with xla_random.inside_xla(True):  # As `train_step` traces it: ThreeFry under XLA.
        step(x, mask)
    times = []
    for _ in range(60):
        start = time.perf_counter()
        float(tf.reduce_sum(step(x, mask)[0]))
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


for rows in (512, 1024):
    for dropout in (0.2, 0.0):
        print(f"rows {rows}, dropout {dropout}: {block_ms(rows, dropout):.1f} ms")
