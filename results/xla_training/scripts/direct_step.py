"""The compiled training step called directly (no `fit` loop), synced each call:
`python results/xla_training/scripts/direct_step.py MODEL XLA(0|1) [CONFIG_JSON]`, e.g.
`... hierdiffuse 1 {\"encoder_layers\":0}` for the parts table of docs/performance.md.
`hierdiffuse bench train` reports the same timing as `step_ms`."""
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"]="2"
import numpy as np, tensorflow as tf, keras
import hierdiffuse_tf
from hierdiffuse_tf import export
from hierdiffuse_tf.bench.portable import DEFAULT_SHAPE
from hierdiffuse_tf.models import build_model
name = sys.argv[1]; xla = sys.argv[2] == "1"
import json
extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
model = build_model(name, {**DEFAULT_SHAPE, **extra}, shared=True)
x = {k: tf.constant(v) for k, v in export.example_request(model.config, 256).items()}
y = tf.cast(tf.random.uniform((256,), 0, 2, tf.int32), tf.float32)
model(x)
model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=xla)
data = tf.data.Dataset.from_tensors((x, y)).repeat()
model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)
it = iter(data)
fn = model.train_function
ts = []
for i in range(40):
    t0 = time.perf_counter(); out = fn(it); _ = float(out["loss"]); ts.append(time.perf_counter() - t0)
ms = np.array(ts) * 1e3
cpu0 = time.process_time(); t0 = time.perf_counter()
for i in range(40): out = fn(it)
float(out["loss"]); wall = time.perf_counter() - t0; cpu = time.process_time() - cpu0
print(f"RESULT {name} {extra} xla={xla}: synced median {np.median(ms):.1f} min {ms.min():.1f} max {ms.max():.1f}; unsynced {1e3*wall/40:.1f} ms/step wall, {1e3*cpu/40:.1f} ms CPU; {np.round(ms[:16],1).tolist()}")
