"""The training step on one real ml-100k batch (static shape), as `fit` runs it: the best of 5
rounds of 20 steps after a warm-up that compiles it. docs/performance.md compares the default
HierDiffuse with the f_S skip of `skip_empty_cond.diff` (not landed) this way:

    git worktree add --detach /tmp/skip 4a3638d && git -C /tmp/skip apply "$PWD/results/f_s_skip/skip_empty_cond.diff"
    python results/f_s_skip/real_step.py "$PWD" hierdiffuse,din     # this checkout
    python results/f_s_skip/real_step.py /tmp/skip hierdiffuse      # with the skip

Argument 1 is the checkout whose package is timed; argument 2 the models.
"""
import sys, time, json
root = sys.argv[1]; sys.path.insert(0, root)
import numpy as np, tensorflow as tf, keras
import hierdiffuse_tf
from hierdiffuse_tf import training
from hierdiffuse_tf.models import build_model
from hierdiffuse_tf.datasets import pipeline
assert hierdiffuse_tf.__file__.startswith(root), hierdiffuse_tf.__file__
data = pipeline.open_dataset("movielens_100k_ctr")
batches = list(data.batches("train", 256, shuffle=True, seed=0).take(8))
x, y = batches[3]
print("nonempty sessions", float(tf.reduce_mean(tf.cast(tf.reduce_any(x["short_items"] > 0, -1), tf.float32))))
res = {}
for name in sys.argv[2].split(","):
    model = build_model(name, data.model_values(), shared=True)
    model(x)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=training.xla_training(type(model)))
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    t = time.perf_counter(); model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0); comp = time.perf_counter() - t
    best = 1e9
    for r in range(5):
        t = time.perf_counter(); model.fit(ds, steps_per_epoch=20, epochs=1, verbose=0)
        best = min(best, (time.perf_counter() - t) / 20 * 1e3)
    res[name] = (round(best, 2), round(comp, 1))
    print(name, "step ms", round(best, 2), "warmup s", round(comp, 1), flush=True)
print(json.dumps(res))
