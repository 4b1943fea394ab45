"""Where a `rank` call (1 user x 256 candidates) spends its time, part by part.

Each part is a `tf.function` over the outputs of the parts before it, timed by
the benchmarks' `time_paths` (interleaved repeats, median); the default model,
random weights. Run from the repository root:

    python results/rank/rank_parts.py results/rank/rank_parts.json
"""

import json
import sys

import numpy as np
import tensorflow as tf

from hierdiffuse_tf import export
from hierdiffuse_tf.bench.portable import default_config
from hierdiffuse_tf.bench.timing import time_paths
from hierdiffuse_tf.models import HierDiffuse
from hierdiffuse_tf.utils import utc_timestamp

C = 256
config = default_config()
model = HierDiffuse(config)
x = {k: tf.constant(v) for k, v in export.example_request(config, C).items()}
model(x)
user = {k: x[k][:1] for k in export.USER_FEATURES}
items = tf.constant(np.arange(2, 2 + C) % config.num_items, tf.int64)
cats = tf.constant(np.arange(C) % config.num_cats, tf.int64)

tokens = model.user_side(user)
target = model.embedding(items, cats)
encoded = model.read_out(tokens, target)
inputs = [None if v is None else tf.broadcast_to(v, [C, *v.shape[1:]]) for v in model.diffusion_inputs(encoded)]
h_fusion = model.fuse(*inputs, sampler="tcc")
context = encoded["short"].pooled


def long_readout():
    return model.long_readout(tokens.long, tokens.long_mask, query=target)


def short_readout_and_groups():  # h_S (Eq. 3) and the two SGD conditions.
    side = model.read_out(tokens, target)["short"]
    return side.pooled, model.diffusion_inputs({"long": encoded["long"], "short": side})[1]


parts = {
    "user_side (encoders, once)": lambda: model.user_side(user),
    "target embeddings": lambda: model.embedding(items, cats),
    "long readout": long_readout,
    "short readout and SGD groups": short_readout_and_groups,
    "fusion (TCC, one denoiser call)": lambda: model.fuse(*inputs, sampler="tcc"),
    "head": lambda: model.head(h_fusion, target, context, training=False),
    "whole rank call": lambda: model.score_candidates(model.user_side(user), items, cats, sampler="tcc"),
    "call floor": lambda: target * 2.0,
}
speed = time_paths({name: tf.function(fn) for name, fn in parts.items()}, repeats=7)
result = {"ms_per_call": {name: 1000.0 / v for name, v in speed.items()}, "candidates": C,
          "date": utc_timestamp(), "tensorflow": tf.__version__}
for name, ms in result["ms_per_call"].items():
    print(f"{name:36s} {ms:7.3f} ms")
if len(sys.argv) > 1:
    with open(sys.argv[1], "w") as f:
        json.dump(result, f, indent=2)
