"""f_S's attention core alone, forward and gradient under XLA: Keras' batched-matmul form against
broadcast products and sums. Argument 1: the number of sessions (rows) of 10 behaviours, one head
of 32. Prints the best of 8 rounds of 50 calls each, in ms. docs/performance.md ("A third VM")
quotes `python results/speed_s46/scripts/attn_core.py 512` and `... 1024` (2026-12-07 19:59 UTC,
AMD EPYC VM, idle): 1.552 against 1.310 ms, and 2.966 against 1.882 ms.
"""
import time, sys, os
import tensorflow as tf
R, N, D = int(sys.argv[1]) if len(sys.argv) > 1 else 512, 10, 32
rng = tf.random.Generator.from_seed(0)
q = tf.Variable(rng.normal((R, N, D))); k = tf.Variable(rng.normal((R, N, D))); v = tf.Variable(rng.normal((R, N, D)))
mask = tf.constant(rng.uniform((R, N)) < 0.7)
bias = tf.where(mask, 0.0, -1e9)[:, None, :]

def matmul_form(q, k, v):
    s = tf.einsum("bqd,bkd->bqk", q, k) / 5.657 + bias
    p = tf.nn.softmax(s, -1)
    return tf.einsum("bqk,bkd->bqd", p, v)

def bcast_form(q, k, v):
    s = tf.reduce_sum(q[:, :, None, :] * k[:, None, :, :], -1) / 5.657 + bias
    p = tf.nn.softmax(s, -1)
    return tf.reduce_sum(p[:, :, :, None] * v[:, None, :, :], 2)

def step_of(f):
    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            y = f(q, k, v)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [q, k, v])
    return step

fs = {"matmul": step_of(matmul_form), "bcast": step_of(bcast_form)}
a = matmul_form(q, k, v); b = bcast_form(q, k, v)
print("max diff", float(tf.reduce_max(tf.abs(a - b))))
for f in fs.values():
    f()
best = {n: 1e9 for n in fs}
for r in range(8):
    for n, f in fs.items():
        t = time.perf_counter()
        for _ in range(50):
            out = f()
        _ = out[0].numpy()
        best[n] = min(best[n], (time.perf_counter() - t) / 50 * 1e3)
print({n: round(x, 3) for n, x in best.items()}, "ms per fwd+grad, R =", R)
