"""`hierdiffuse bench inference | fusion`: the inference paths of one trained-shape model, timed
in one run, and the fusion stage alone at several batch sizes.

Every path is a `tf.function` over the same batch, timed by `timing.time_paths`;
the result is the median batches/s per path and the ratios the performance
targets are stated in. Weights are random: speed does not depend on them.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import tensorflow as tf

from hierdiffuse_tf import export
from hierdiffuse_tf.bench import portable
from hierdiffuse_tf.bench.portable import built, default_config
from hierdiffuse_tf.bench.timing import machine, time_paths
from hierdiffuse_tf.models import HierDiffuse, build_model
from hierdiffuse_tf.utils import utc_timestamp


def bench_inference(batch_size: int = 256, candidates: int = 256, repeats: int = 7,
                    model_values: dict | None = None) -> dict:
    config = default_config(model_values)
    values = config.to_dict()
    model = HierDiffuse(config)
    x = {k: tf.constant(v) for k, v in export.example_request(config, batch_size).items()}
    model(x)

    def scorer(m, **kw):
        return tf.function(lambda: m(x, training=False)["ctr"], **kw)

    def sampler_path(name, steps=None):
        @tf.function
        def run():
            return model.score(x, sampler=name, steps=steps)
        return run

    inputs = model.fusion_inputs(x)

    # (e) times DDPM-100: all T steps, from t = T (the same weights, an inference-only change).
    from_t = built(HierDiffuse(config.replace(t_star=config.diffusion_steps)), x)
    from_t.set_weights(model.get_weights())

    def fusion_path(name, steps=None, jit=False, m=model):
        return tf.function(lambda: m.fuse(*inputs, sampler=name, steps=steps), jit_compile=jit)

    fusion = {"fusion_tcc": ("tcc", None, model), "fusion_ddim_10": ("ddim", 10, model),
              "fusion_ddpm_all": ("ddpm", None, model), "fusion_ddpm_100": ("ddpm", None, from_t)}

    with tempfile.TemporaryDirectory() as tmp:
        path = export.export_saved_model(model, os.path.join(tmp, "1"), ["rank"])
        loaded = tf.saved_model.load(path)
        serving = loaded.signatures["serving_default"]
        # The same export with XLA (`hierdiffuse export --xla`): a diagnostic, not a target.
        serving_xla = tf.saved_model.load(export.export_saved_model(
            model, os.path.join(tmp, "xla", "1"), [], xla=True)).signatures["serving_default"]
        rank = loaded.signatures["rank"]
        features = {k: x[k] for k in export.MODEL_FEATURES}
        user = {k: x[k][:1] for k in export.USER_FEATURES}
        items = tf.constant(np.arange(2, 2 + candidates) % config.num_items, tf.int64)
        cats = tf.constant(np.arange(candidates) % config.num_cats, tf.int64)
        single_rows = {**{k: tf.repeat(v, candidates, axis=0) for k, v in user.items()},
                       "target_item": items, "target_cat": cats}
        paths = {
            "tcc": sampler_path("tcc"),
            "ddim_10": sampler_path("ddim", 10),
            "ddpm_all": sampler_path("ddpm"),
            "no_fusion": sampler_path("none"),
            **{name: fusion_path(sampler, steps, m=m) for name, (sampler, steps, m) in fusion.items()},
            **{f"{name}_xla": fusion_path(sampler, steps, jit=True, m=m)
               for name, (sampler, steps, m) in fusion.items()},
            # The cost of calling a `tf.function` at all (one op on h_L): what every path pays once.
            "call_floor": tf.function(lambda: inputs[0] * 2.0),
            "keras_call": scorer(model),
            "savedmodel": lambda: serving(**features)["ctr"],
            "savedmodel_xla": lambda: serving_xla(**features)["ctr"],
            "avg_pool_dnn": scorer(built(build_model("avg_pool_dnn", values, shared=True), x)),
            "din": scorer(built(build_model("din", values, shared=True), x)),
            "rank_1x%d" % candidates: lambda: rank(**user, candidate_items=items, candidate_cats=cats)["ctr"],
            "batch_%d_rows" % candidates: lambda: serving(**single_rows)["ctr"],
        }
        speed = time_paths(paths, repeats=repeats)
    # The fusion stage runs with XLA where it helps: each path at its faster compile.
    best = {name: max(speed[name], speed[f"{name}_xla"]) for name in fusion}
    ratios = {
        **portable.sampler_ratios(speed, best),
        "fusion_tcc_over_ddpm_from_t_star": best["fusion_tcc"] / best["fusion_ddpm_all"],
        "savedmodel_over_keras": speed["savedmodel"] / speed["keras_call"],
        "rank_over_batch": speed["rank_1x%d" % candidates] / speed["batch_%d_rows" % candidates],
    }
    # Diagnostic only (not a target): the fusion ratio once the per-call floor is taken out.
    graph_ops = {name: len(paths[name].get_concrete_function().graph.as_graph_def().node)
                 for name in fusion}  # Traced ops per fusion path (before Grappler).
    diagnostics = {**portable.net_of_call(best, speed["call_floor"]), "fusion_graph_ops": graph_ops,
                   "savedmodel_xla_over_savedmodel": speed["savedmodel_xla"] / speed["savedmodel"]}
    return {"batches_per_sec": speed, "ratios": ratios, "diagnostics": diagnostics,
            "batch_size": batch_size,
            "candidates": candidates, "ddpm_steps": config.start_step, "repeats": repeats,
            "fusion_compile": {name: "xla" if speed[f"{name}_xla"] > speed[name] else "tf.function"
                               for name in fusion},
            "machine": machine(),
            "tensorflow": tf.__version__, "model": config.to_dict(),
            "date": utc_timestamp()}


TARGETS = {**portable.TARGETS, "rank_over_batch": 10.0, "savedmodel_over_keras": 1.0}


def markdown(result: dict) -> str:
    lines = ["| ratio | measured | target | met |", "|---|---|---|---|"]
    for key, target in TARGETS.items():
        value = result["ratios"][key]
        lines.append(f"| `{key}` | {value:.2f}x | >= {target}x | {'yes' if value >= target else 'no'} |")
    lines += ["", "| path | batches/s |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in result["batches_per_sec"].items()]
    diag = result.get("diagnostics")
    if diag:
        xla = diag.get("savedmodel_xla_over_savedmodel")
        lines += ["", f"Diagnostic: one `tf.function` call costs {diag['call_floor_ms']:.3f} ms here; net of "
                  f"it, fusion TCC over DDIM-10 is {diag['fusion_tcc_over_ddim_net_of_call']:.2f}x. "
                  + (f"The XLA export (`--xla`) is {xla:.2f}x the plain SavedModel. " if xla else "")
                  + "Traced ops: "
                  + ", ".join(f"{k} {v}" for k, v in diag.get("fusion_graph_ops", {}).items()) + "."]
    return "\n".join(lines) + f"\n\n_Batch {result['batch_size']}, {result['machine']}, TF {result['tensorflow']}._\n"


def bench_fusion(batch_sizes=(256, 4096, 16384), repeats: int = 7,
                 model_values: dict | None = None) -> dict:
    """The fusion stage alone (TCC, DDIM-10, DDPM from t*) at each batch size, in one run.

    A compiled call has a fixed floor (about 0.4 ms here), which bounds TCC over
    DDIM-10 at small batches; at large ones the floor is small beside the work.
    Each path keeps its faster compile (graph or XLA).
    """
    config = default_config(model_values)
    model = built(HierDiffuse(config), {k: tf.constant(v) for k, v in
                                        export.example_request(config, 8).items()})
    fusion = {"fusion_tcc": ("tcc", None), "fusion_ddim_10": ("ddim", 10), "fusion_ddpm_all": ("ddpm", None)}
    results = {}
    for batch in batch_sizes:
        x = {k: tf.constant(v) for k, v in export.example_request(config, batch).items()}
        inputs = model.fusion_inputs(x)
        paths = {f"{name}{'_xla' if jit else ''}": tf.function(
                     lambda sampler=sampler, steps=steps: model.fuse(*inputs, sampler=sampler, steps=steps),
                     jit_compile=jit)
                 for name, (sampler, steps) in fusion.items() for jit in (False, True)}
        speed = time_paths(paths, repeats=repeats)
        best = {name: max(speed[name], speed[f"{name}_xla"]) for name in fusion}
        results[batch] = {"batches_per_sec": speed,
                          "ratios": {"fusion_tcc_over_ddim": best["fusion_tcc"] / best["fusion_ddim_10"],
                                     # From t* (50 steps), not DDPM-100 as `bench inference`'s key.
                                     "fusion_tcc_over_ddpm_from_t_star":
                                         best["fusion_tcc"] / best["fusion_ddpm_all"]}}
    return {"results": results, "ddpm_steps": config.start_step, "repeats": repeats,
            "machine": machine(), "tensorflow": tf.__version__,
            "date": utc_timestamp()}


def markdown_fusion(result: dict) -> str:
    target = portable.TARGETS["fusion_tcc_over_ddim"]
    lines = ["| batch | fusion TCC over DDIM-10 | fusion TCC over DDPM from t* | TCC batches/s |",
             "|---|---|---|---|"]
    for batch, r in result["results"].items():
        tcc = max(r["batches_per_sec"]["fusion_tcc"], r["batches_per_sec"]["fusion_tcc_xla"])
        ratio = r["ratios"]["fusion_tcc_over_ddim"]
        lines.append(f"| {batch} | {ratio:.2f}x{'' if ratio >= target else ' (missed)'} | "
                     f"{r['ratios']['fusion_tcc_over_ddpm_from_t_star']:.1f}x | {tcc:.0f} |")
    return "\n".join(lines) + (f"\n\n_DDPM runs {result['ddpm_steps']} steps; target: TCC over DDIM-10 "
                               f">= {target:.0f}x at some batch; {result['machine']}, TF {result['tensorflow']}, "
                               f"{result['date']}._\n")
