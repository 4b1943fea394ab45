"""`python -m hierdiffuse_tf.bench.portable`: the model's inference paths on any Keras backend.

`bench inference` times the TensorFlow serving stack (`tf.function`, XLA, the
SavedModel, `rank`). This bench times only the model math, which is written
once in `keras.ops`, under whichever backend `KERAS_BACKEND` selects, so it
runs where TensorFlow is not installed: the GPU figures in docs/benchmarks.md were
taken with it, with JAX on an H100. Each path is one compiled function of the
model's variables and the batch (`jax.jit` on JAX, `tf.function` with XLA on
TensorFlow; eager under `no_grad` on torch, eager on numpy), warmed up, then timed in
interleaved repeats (`timing.time_paths`). Weights are random: speed does not depend on them.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from hierdiffuse_tf.bench.timing import machine, time_paths, write
from hierdiffuse_tf.config import HierDiffuseConfig
from hierdiffuse_tf.models import HierDiffuse, build_model
from hierdiffuse_tf.models.base import example_features
from hierdiffuse_tf.utils import utc_timestamp


# ml-100k's vocabulary with the default model size.
DEFAULT_SHAPE = {"num_items": 1618, "num_cats": 21}


# The ratios this bench can measure, with the targets of `bench inference` (issue 7).
TARGETS = {"tcc_over_ddim": 1.24, "tcc_over_ddpm": 1.61, "tcc_over_no_fusion": 0.9,
           "fusion_tcc_over_ddim": 8.0, "fusion_tcc_over_ddpm": 60.0}


def sampler_ratios(speed: dict, fusion: dict | None = None) -> dict:
    """The issue-7 sampler ratios (`TARGETS`' first five) from batches/s per path.

    `fusion` gives the fusion-stage speeds when they differ from `speed`'s
    (e.g. each path at its faster compile).
    """
    fusion = fusion or speed
    return {"tcc_over_ddim": speed["tcc"] / speed["ddim_10"],
            "tcc_over_ddpm": speed["tcc"] / speed["ddpm_all"],
            "tcc_over_no_fusion": speed["tcc"] / speed["no_fusion"],
            "fusion_tcc_over_ddim": fusion["fusion_tcc"] / fusion["fusion_ddim_10"],
            "fusion_tcc_over_ddpm": fusion["fusion_tcc"] / fusion["fusion_ddpm_100"]}


def net_of_call(fusion: dict, call_floor: float) -> dict:
    """Fusion-stage times (ms) and ratios once the cost of one compiled call is taken out.

    `fusion` maps fusion path names to batches/s; `call_floor` is the calls/s
    of a path that does one op. A diagnostic, not a target.
    """
    floor_ms = 1000.0 / call_floor
    net_ms = {name: max(1000.0 / v - floor_ms, 1e-6) for name, v in fusion.items()
              if name.startswith("fusion_") and not name.endswith("_xla")}
    return {"call_floor_ms": floor_ms, "fusion_net_of_call_ms": net_ms,
            "fusion_tcc_over_ddim_net_of_call": net_ms["fusion_ddim_10"] / net_ms["fusion_tcc"],
            "fusion_tcc_over_ddpm_net_of_call": net_ms["fusion_ddpm_100"] / net_ms["fusion_tcc"]}


def jit_with_weights(fn, model):
    """`fn` under `jax.jit`, called as `fn(*args)`, with `model`'s variables as arguments of
    the compiled function (as in serving, where weights are inputs, not constants folded
    into the program).

    Each trace appends to the returned callable's `assigned` list whether `fn` assigned
    any variable (a seed generator's state, say): updates are dropped, and a random draw
    would be fixed when traced.
    """
    import jax

    variables = model.variables

    def pure(values, args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
            before = dict(scope.state_mapping)
            out = fn(*args)
            call.assigned.append(any(before.get(k) is not v for k, v in scope.state_mapping.items()))
        return out

    jitted = jax.jit(pure)

    def call(*args):
        return jitted([v.value for v in variables], args)

    call.assigned = []
    return call


def compile_path(fn, model, *args):
    """`fn(*args)` compiled for the active backend, as a zero-argument callable
    (on JAX by `jit_with_weights`)."""
    backend = keras.backend.backend()
    if backend == "jax":
        call = jit_with_weights(fn, model)
        return lambda: call(*args)
    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(fn, jit_compile=True)
        return lambda: compiled(*args)
    if backend == "torch":
        import torch

        def eager():
            with torch.no_grad():
                return fn(*args)
        return eager
    return lambda: fn(*args)  # numpy: eager (inference only, as this bench is).


def default_config(model_values: dict | None = None) -> HierDiffuseConfig:
    """The benchmarks' HierDiffuse: ml-100k's vocabulary, T = 100, then `model_values`."""
    return HierDiffuseConfig(**{**DEFAULT_SHAPE, "diffusion_steps": 100, **(model_values or {})})


def bench_portable(batch_sizes=(256,), repeats: int = 7, model_values: dict | None = None) -> dict:
    """Batches/s of every model-math path at each batch size, plus the issue-7 ratios."""
    config = default_config(model_values)
    values = config.to_dict()
    features = {k: ops.convert_to_tensor(v) for k, v in example_features(config, 8).items()}
    model = built(HierDiffuse(config), features)
    # DDPM-100 for the fusion stage: all T steps from t = T, the same weights.
    from_t = built(HierDiffuse(config.replace(t_star=config.diffusion_steps)), features)
    from_t.set_weights(model.get_weights())
    baselines = {name: built(build_model(name, values, shared=True), features)
                 for name in ("avg_pool_dnn", "din")}

    def whole(sampler, steps=None):
        def run(x):
            return model.score(x, sampler=sampler, steps=steps)
        return run

    def fusion(m, sampler, steps=None):
        return lambda *inputs: m.fuse(*inputs, sampler=sampler, steps=steps)

    results = {}
    for batch in batch_sizes:
        x = {k: ops.convert_to_tensor(v) for k, v in example_features(config, batch).items()}
        inputs = model.fusion_inputs(x)
        paths = {
            "tcc": compile_path(whole("tcc"), model, x),
            "ddim_10": compile_path(whole("ddim", 10), model, x),
            "ddpm_all": compile_path(whole("ddpm"), model, x),
            "no_fusion": compile_path(whole("none"), model, x),
            "fusion_tcc": compile_path(fusion(model, "tcc"), model, *inputs),
            "fusion_ddim_10": compile_path(fusion(model, "ddim", 10), model, *inputs),
            "fusion_ddpm_100": compile_path(fusion(from_t, "ddpm"), from_t, *inputs),
            **{name: compile_path(lambda f, m=m: m(f, training=False)["ctr"], m, x)
               for name, m in baselines.items()},
            # The cost of one compiled call at all (one op on h_L): what every path pays once.
            "call_floor": compile_path(lambda h: h * 2.0, model, inputs[0]),
        }
        speed = time_paths(paths, repeats=repeats)
        # Serving must be deterministic: the same batch twice gives bitwise the same scores.
        deterministic = {name: bool(np.array_equal(*(ops.convert_to_numpy(paths[name]()) for _ in range(2))))
                         for name in ("tcc", "ddim_10", "ddpm_all", "no_fusion")}
        ratios = sampler_ratios(speed)
        # Diagnostic only (not a target): the fusion ratios once the per-call floor is taken out.
        diagnostics = net_of_call(speed, speed["call_floor"])
        results[str(batch)] = {"batches_per_sec": speed, "ratios": ratios, "diagnostics": diagnostics,
                               "deterministic": deterministic}
    return {"backend": keras.backend.backend(), "device": _device(), "results": results,
            "dtype_policy": keras.config.dtype_policy().name,
            "ddpm_steps": config.start_step, "repeats": repeats, "model": config.to_dict(),
            "machine": machine(),
            "keras": keras.__version__, "date": utc_timestamp()}


def built(model, x):
    """`model` with its weights, built by a symbolic call: eager JAX would dispatch and compile
    the first forward pass op by op (HierDiffuse: 7.6 s against 3.5 s on 2 CPUs)."""
    model({k: keras.KerasTensor(v.shape, v.dtype) for k, v in x.items()}, training=False)
    return model


def _device() -> str:
    if keras.backend.backend() == "jax":
        import jax

        return ", ".join(sorted({d.device_kind for d in jax.devices()}))
    if keras.backend.backend() == "torch":
        import torch

        return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return "cpu"


def markdown(result: dict) -> str:
    sizes = list(result["results"])
    lines = ["| ratio | target | " + " | ".join(f"batch {b}" for b in sizes) + " |",
             "|---|---|" + "---|" * len(sizes)]
    for key, target in TARGETS.items():
        cells = []
        for b in sizes:
            value = result["results"][b]["ratios"][key]
            cells.append(f"{value:.2f}x{'' if value >= target else ' (missed)'}")
        lines.append(f"| `{key}` | >= {target}x | " + " | ".join(cells) + " |")
    lines += ["", "| path | " + " | ".join(f"batches/s at {b}" for b in sizes) + " |",
              "|---|" + "---|" * len(sizes)]
    for name in result["results"][sizes[0]]["batches_per_sec"]:
        lines.append(f"| {name} | " + " | ".join(
            f"{result['results'][b]['batches_per_sec'][name]:.1f}" for b in sizes) + " |")
    for b in sizes:
        diag = result["results"][b].get("diagnostics")
        if diag:
            lines += ["", f"Diagnostic, batch {b}: one compiled call costs {diag['call_floor_ms']:.3f} ms; net of "
                      f"it, fusion TCC is {diag['fusion_tcc_over_ddim_net_of_call']:.2f}x DDIM-10 and "
                      f"{diag['fusion_tcc_over_ddpm_net_of_call']:.1f}x DDPM-100."]
        same = result["results"][b].get("deterministic")
        if same:
            lines += ["", f"Batch {b}, the same batch scored twice is bitwise identical: "
                      + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items()) + "."]
    return "\n".join(lines) + (f"\n\n_Keras {result['keras']} on {result['backend']}, "
                               f"dtype policy {result.get('dtype_policy', 'float32')}, "
                               f"{result['device']}; {result['date']}._\n")


def main(argv=None) -> None:
    """`python -m hierdiffuse_tf.bench.portable`: runs where the CLI's TensorFlow stack is absent."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", default="256", help="comma-separated, e.g. 256,4096")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", help="write the result here, and its Markdown beside it")
    p.add_argument("--dtype-policy", default="float32",
                   help="Keras dtype policy for every layer, e.g. mixed_bfloat16 on a GPU")
    args = p.parse_args(argv)
    keras.config.set_dtype_policy(args.dtype_policy)
    result = bench_portable([int(b) for b in args.batch_sizes.split(",")], repeats=args.repeats)
    write(result, args.json, markdown)
    print(markdown(result))
