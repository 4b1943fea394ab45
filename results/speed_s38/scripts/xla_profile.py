"""Where the CPU time of one XLA-compiled training step goes, by the Keras layer each HLO op
came from: the step on one real ml-100k training batch of 256, 20 steps under the TensorFlow
profiler with XLA's per-op trace events on; prints the CPU milliseconds per step of each
layer (the forward ops and, prefixed `grad:`, their gradients), summed over XLA's threads.

docs/performance.md ("Narrower f_S attention and denoiser") quotes

    python results/speed_s38/scripts/xla_profile.py "hierdiffuse:encoder_heads=2:denoiser_units=128" /tmp/xla_profile_old
    python results/speed_s38/scripts/xla_profile.py hierdiffuse /tmp/xla_profile_new

A variant is `model[:key=value...]`; argument 2 is a scratch folder (the profile and the HLO
dump go there). An optional argument 3 is the depth of the layer path (1: top-level layers).
CPU time is not wall time: XLA runs independent ops on both cores at once.
"""
import collections
import glob
import os
import re
import sys

scratch = sys.argv[2]
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true"
                           f" --xla_dump_to={scratch}/hlo --xla_dump_hlo_as_text")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from hierdiffuse_tf import training  # noqa: E402
from hierdiffuse_tf.datasets import pipeline  # noqa: E402

STEPS = 20
depth = int(sys.argv[3]) if len(sys.argv) > 3 else 1
data = pipeline.open_dataset("movielens_100k_ctr")
batch = list(data.batches("train", 256, shuffle=True, seed=0, drop_remainder=True).take(4))[3]
name, *sets = sys.argv[1].split(":")
cls, model_config, train_config = training.resolve_configs(name, data, overrides=sets)
keras.utils.set_random_seed(0)
model = training.compile_model(cls(model_config), train_config)
batches = tf.data.Dataset.from_tensors(batch).repeat()
model.fit(batches, steps_per_epoch=3, epochs=1, verbose=0)
step, iterator = model.train_function, iter(batches)
for _ in range(10):
    step(iterator)
tf.profiler.experimental.start(f"{scratch}/trace")
for _ in range(STEPS):
    step(iterator)
tf.profiler.experimental.stop()

# Each HLO op's TensorFlow op name (its Keras layer path) from the compiled step's dump.
hlo = open(glob.glob(f"{scratch}/hlo/*one_step_on_data*cpu_after_optimizations.txt")[-1]).read()
op_names = {}
for line in hlo.splitlines():
    match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = ", line)
    if match:
        found = re.search(r'op_name="([^"]*)"', line)
        op_names[match.group(1)] = found.group(1) if found else "(no op name)"
space = xplane_pb2.XSpace()
space.ParseFromString(open(sorted(glob.glob(f"{scratch}/trace/**/*.xplane.pb", recursive=True))[-1], "rb").read())
per_layer, total = collections.Counter(), 0.0
for plane in space.planes:
    for line in plane.lines:
        if "Eigen" not in line.name:  # XLA's ops run on the Eigen thread pool.
            continue
        for event in line.events:
            op = plane.event_metadata[event.metadata_id].name
            if op.startswith(("ThunkExecutor", "Slinky", "cond.")):  # Containers, not ops.
                continue
            ms = event.duration_ps / 1e9 / STEPS
            total += ms
            path = op_names.get(op, "(no op name)")
            grad = "grad:" if "gradient" in path else ""
            parts = [p for p in path.split("/") if p and not p.startswith(("gradient", "cond", "StatelessIf"))]
            per_layer[grad + "/".join(parts[:depth])] += ms
print(f"{sys.argv[1]}: {total:.1f} CPU ms per step")
for layer, ms in per_layer.most_common(25):
    print(f"{ms:7.2f}  {layer}")
