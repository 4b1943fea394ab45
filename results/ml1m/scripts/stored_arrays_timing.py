"""Times the stored compact arrays of ml-1m's training split (docs/performance.md, "The arrays
stored once per build"). Run from the repository root, with the dataset prepared:

    python results/ml1m/scripts/stored_arrays_timing.py

On a machine where the arrays are not stored yet, the first call decodes and stores them;
every later call maps them. Its two runs of 2026-12-06 (2 cores shared with two training
jobs) are in results/ml1m/stored_arrays_timing.json."""
import time, json, numpy as np
from hierdiffuse_tf.datasets import pipeline
data = pipeline.open_dataset("movielens_1m_ctr")
b = data.builder
t = time.perf_counter(); first = pipeline.stored_arrays(b, "train"); t1 = time.perf_counter() - t
t = time.perf_counter(); second = pipeline.stored_arrays(b, "train"); t2 = time.perf_counter() - t
t = time.perf_counter(); touched = sum(int(np.asarray(v[::4096]).sum() >= 0) for v in second.values()); t3 = time.perf_counter() - t
t = time.perf_counter(); ds = pipeline.make_dataset(b, "train", 256, shuffle=True, seed=0, cache=True); n = sum(1 for _ in ds.take(200)); t4 = time.perf_counter() - t
print(json.dumps({"first_call_s": round(t1, 1), "mapped_call_s": round(t2, 3), "batches_200_s": round(t4, 1), "features": len(second), "dtypes": {k: str(v.dtype) for k, v in second.items()}}))
