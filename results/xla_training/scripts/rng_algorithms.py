"""The random-number algorithms under XLA and without it (docs/performance.md, "XLA and
the random numbers"): a mask over 655,360 floats with each algorithm. Run:
`python results/xla_training/scripts/rng_algorithms.py` (ThreeFry has no kernel outside XLA,
so its graph row is an error)."""
import os, time, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"]="2"
import tensorflow as tf
shape = (1024, 10, 64)
x = tf.random.normal(shape)
seed = tf.constant([3, 4], tf.int32)
def mk(alg):
    def f(x, seed):
        u = tf.random.stateless_uniform(tf.shape(x), seed=seed, alg=alg)
        return tf.reduce_sum(tf.where(u > 0.1, x, 0.0))
    return f
def hashrng(x, seed):
    n = tf.size(x)
    i = tf.cast(tf.range(n), tf.uint32)
    s = tf.cast(seed[0], tf.uint32) * tf.constant(0x9E3779B9, tf.uint32) + tf.cast(seed[1], tf.uint32)
    h = i * tf.constant(0x85EBCA6B, tf.uint32) + s
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(16, tf.uint32)))
    h = h * tf.constant(0x7FEB352D, tf.uint32)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(15, tf.uint32)))
    h = h * tf.constant(0x846CA68B, tf.uint32)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(16, tf.uint32)))
    keep = tf.reshape(h, tf.shape(x)) >= tf.constant(int(0.1 * 2**32), tf.uint32)
    return tf.reduce_sum(tf.where(keep, x, 0.0))
for name, fn in (("philox", mk("philox")), ("threefry", mk("threefry")), ("auto", mk("auto_select")), ("hash", hashrng)):
  for jit in (False, True):
    try:
        g = tf.function(fn, jit_compile=jit)
        for _ in range(3): g(x, seed)
        t0 = time.perf_counter(); n = 20
        for k in range(n): g(x, seed + k)
        print(name, "xla" if jit else "graph", "%.2f ms" % ((time.perf_counter()-t0)/n*1e3), flush=True)
    except Exception as e:
        print(name, jit, "ERR", str(e)[:200])
