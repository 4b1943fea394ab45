"""The fusion stage under XLA at one batch size: TCC and DDIM with 1, 2, 5 and 10 steps, and a
one-op call (the floor), in one run; prints ms per call. The DDIM series separates what a call
pays once from what each step costs. docs/performance.md ("One step for every row") quotes

    python results/speed_s39/scripts/fusion_steps.py 16384

Weights are random: speed does not depend on them.
"""
import sys

import tensorflow as tf
from hierdiffuse_tf import export
from hierdiffuse_tf.bench.portable import built, default_config
from hierdiffuse_tf.bench.timing import time_paths
from hierdiffuse_tf.models import HierDiffuse
B = int(sys.argv[1])
config = default_config(None)
model = built(HierDiffuse(config), {k: tf.constant(v) for k, v in export.example_request(config, 8).items()})
x = {k: tf.constant(v) for k, v in export.example_request(config, B).items()}
inputs = model.fusion_inputs(x)
paths = {"tcc": tf.function(lambda: model.fuse(*inputs, sampler="tcc"), jit_compile=True)}
for s in (1, 2, 5, 10):
    paths[f"ddim{s}"] = tf.function(lambda s=s: model.fuse(*inputs, sampler="ddim", steps=s), jit_compile=True)
paths["floor"] = tf.function(lambda: inputs[0] * 2.0, jit_compile=True)
sp = time_paths(paths, repeats=7)
for k, v in sp.items(): print(k, round(1000 / v, 3), "ms")
