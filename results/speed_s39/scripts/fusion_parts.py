"""The parts of one guided denoiser call of the fusion stage under XLA at one batch size, each its
own compiled call (so each includes the floor, the one-op call): the TCC stage, the guided call,
the null/absent-condition select (`_nullify`), SGD's group weights, and the denoiser's three
conditions. docs/performance.md ("One step for every row") quotes

    python results/speed_s39/scripts/fusion_parts.py 16384
"""
import sys

import tensorflow as tf
from keras import ops
from hierdiffuse_tf import export
from hierdiffuse_tf.bench.portable import built, default_config
from hierdiffuse_tf.bench.timing import time_paths
from hierdiffuse_tf.models import HierDiffuse
B = int(sys.argv[1])
config = default_config(None)
model = built(HierDiffuse(config), {k: tf.constant(v) for k, v in export.example_request(config, 8).items()})
x = {k: tf.constant(v) for k, v in export.example_request(config, B).items()}
x0, conds, shares, present = model.fusion_inputs(x)
g = model.guided
t = tf.constant([25])
null = ops.expand_dims(g.null, 0)
c0, c1 = tf.identity(conds[:, 0]), tf.identity(conds[:, 1])
def j(f): return tf.function(f, jit_compile=True)
paths = {
 "tcc": j(lambda: model.fuse(x0, conds, shares, present, sampler="tcc")),
 "guided": j(lambda: g(x0, t, conds, shares, present)),
 "nullify": j(lambda: g._nullify(conds, present, False)),
 "group_w": j(lambda: g.group_weights(conds, shares)),
 "call_cond": j(lambda: g.denoiser.call_conditions(x0, t, [null, c0, c1])),
 "floor": j(lambda: x0 * 2.0),
}
sp = time_paths(paths, repeats=7)
for k, v in sp.items(): print(k, round(1000 / v, 3), "ms")
