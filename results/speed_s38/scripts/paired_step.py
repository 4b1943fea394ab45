"""The compiled training step called directly, on one real ml-100k training batch of 256, several
model variants in one process, alternating rounds of 20 steps; prints `{variant: [best round ms,
median round ms]}` as JSON (the method of results/ml100k_skip/scripts/direct_step.py).

A variant is `model[:key=value...]`; the pseudo-setting `stacked_denoiser=1` makes the MLP denoiser
run every condition through its whole network (`Denoiser.call_conditions`, the code before the
shared first term). Argument 2 is the number of rounds. docs/performance.md quotes

    python results/speed_s38/scripts/paired_step.py "hierdiffuse:encoder_heads=1:denoiser_units=64,hierdiffuse,hierdiffuse:stacked_denoiser=1,din" 8

run while the default was 2 heads and 128 units; the same models now are
`hierdiffuse,hierdiffuse:encoder_heads=2:denoiser_units=128,hierdiffuse:encoder_heads=2:denoiser_units=128:stacked_denoiser=1,din`.
"""
import json
import sys
import types

from hierdiffuse_tf.bench.training import paired_step_variants
from hierdiffuse_tf.datasets import pipeline
from hierdiffuse_tf.diffusion.denoiser import Denoiser


def stacked_denoiser(model):
    denoiser = model.guided.denoiser
    denoiser.call_conditions = types.MethodType(Denoiser.call_conditions, denoiser)


data = pipeline.open_dataset("movielens_100k_ctr")
batch = list(data.batches("train", 256, shuffle=True, seed=0, drop_remainder=True).take(4))[3]
print(json.dumps(paired_step_variants(data, sys.argv[1].split(","), batch, int(sys.argv[2]),
                                      patches={"stacked_denoiser": stacked_denoiser})))
