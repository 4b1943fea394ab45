"""`hierdiffuse bench train | profile | xla | epoch`: training examples/s, where a step's time
goes, each model with and without XLA, and DiffuRec's and DreamRec's time per epoch against
HierDiffuse's.

Each model trains in its own process (`timing.run_isolated`), so its time and
peak memory are its own, in rounds that visit every model in turn; a model
keeps its best round. (Many models in one process timed bimodally.)
"""

from __future__ import annotations

import os
import time

import keras
import numpy as np
import tensorflow as tf

from hierdiffuse_tf import export, training
from hierdiffuse_tf.bench.portable import DEFAULT_SHAPE
from hierdiffuse_tf.bench.timing import machine, run_isolated
from hierdiffuse_tf.models import build_model
from hierdiffuse_tf.utils import utc_timestamp


# The share of a training batch's sessions that hold a behaviour, as in ml-100k's and
# ml-1m's training splits (40 % and 38 %, docs/performance.md). The benchmark's batch
# has it, since HierDiffuse's step costs less the more sessions are empty.
TRAINING_SESSION_SHARE = 0.4


def train_throughput(model_name: str, batch_size: int = 256, steps: int = 30,
                     model_values: dict | None = None, xla: bool | None = None,
                     rounds: int = 3, session_share: float | None = TRAINING_SESSION_SHARE) -> dict:
    """Training examples/s of one model on a fixed in-memory batch, and the process's peak RSS.

    The batch is random ids, with `session_share` of its sessions holding
    behaviours (`example_features`; None: all of them).

    `xla` compiles the step with XLA or not; None compiles it as `train` does
    (`training.xla_training`). After the warm-up, `rounds` fits of `steps` steps are
    timed and the fastest is kept: through `fit`, a step's wall time on this project's
    VM comes in multiples of about 15.6 ms, and one slow round would otherwise decide
    the figure. Then the compiled step is timed on its own (`direct_step_ms`), which
    does not show those steps.
    """
    import resource

    values = {**DEFAULT_SHAPE, **(model_values or {})}
    model = build_model(model_name, values, shared=True)
    config = model.config
    x = {k: tf.constant(v) for k, v in export.example_request(config, batch_size,
                                                                session_share=session_share).items()}
    y = tf.cast(tf.random.uniform((batch_size,), 0, 2, tf.int32), tf.float32)
    model(x)
    jit = training.xla_training(type(model)) if xla is None else xla  # None: as `train` compiles it.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(data, steps_per_epoch=3, epochs=1, verbose=0, shuffle=False)  # Trace and warm up.
    seconds = float("inf")
    for _ in range(max(1, rounds)):
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        seconds = min(seconds, time.perf_counter() - start)
    step_ms, cpu_ms = direct_step_ms(model.train_function, iter(data), steps)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"model": model_name, "examples_per_sec": steps * batch_size / seconds,
            "step_ms": step_ms, "step_cpu_ms": cpu_ms,
            "peak_rss_mb": peak_kb / 1024.0, "batch_size": batch_size, "steps": steps,
            "rounds": rounds, "xla": jit, "session_share": session_share}


def direct_step_ms(train_function, iterator, steps: int) -> tuple[float, float]:
    """The median wall ms of `steps` calls of a compiled training step, each synced,
    and the process CPU ms per call: the step without `fit`'s loop around it."""
    walls, cpu = [], time.process_time()
    for _ in range(steps):
        start = time.perf_counter()
        float(train_function(iterator)["loss"])
        walls.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(walls)), 1000.0 * (time.process_time() - cpu) / steps


def paired_step_ms(models: dict, batch, rounds: int, steps: int = 20, batches: dict | None = None) -> dict:
    """`{name: [best round ms, median round ms]}` of each model's compiled training step
    on one `batch`, the models in one process, in alternating rounds of `steps` calls
    (`direct_step_ms`), so that a slow window of the machine falls on all of them alike.

    `models` maps names to compiled models; each is warmed up (traced) here first.
    `batches` gives some of them another batch than `batch`, by name.
    """
    compiled = {}
    for name, model in models.items():
        data = tf.data.Dataset.from_tensors((batches or {}).get(name, batch)).repeat()
        model.fit(data, steps_per_epoch=3, epochs=1, verbose=0, shuffle=False)
        compiled[name] = (model.train_function, iter(data))
    times = {name: [] for name in compiled}
    for _ in range(rounds):
        for name, (step, iterator) in compiled.items():
            times[name].append(direct_step_ms(step, iterator, steps)[0])
    return {name: [round(min(ms), 1), round(float(np.median(ms)), 1)] for name, ms in times.items()}


def paired_step_variants(data, specs: list[str], batch, rounds: int,
                         patches: dict | None = None, steps: int = 20) -> dict:
    """`paired_step_ms` of model variants of `data` (an opened dataset) on one `batch`.

    Each spec is `model[:key=value...]`, the settings as `--set` takes them. A setting
    `key=1` whose key is in `patches` is no config field: `patches[key](model)` changes the
    built model before it is compiled, for one-off timings of code that no field selects.
    Every variant is built from seed 0.
    """
    patches = {f"{key}=1": patch for key, patch in (patches or {}).items()}
    models = {}
    for spec in specs:
        name, *sets = spec.split(":")
        chosen = [patches[s] for s in sets if s in patches]
        sets = [s for s in sets if s not in patches]
        cls, model_config, train_config = training.resolve_configs(name, data, overrides=sets)
        keras.utils.set_random_seed(0)
        model = cls(model_config)
        model(batch[0], training=False)  # Builds every layer, for the patches to find.
        for patch in chosen:
            patch(model)
        models[spec] = training.compile_model(model, train_config)
    return paired_step_ms(models, batch, rounds, steps)


# `bench profile`: each part's share of a HierDiffuse training step, by removing it. A
# variant is the default with one part taken out; the part costs the difference.
PROFILE_PARTS = (
    ("f_S transformer block", {"encoder_layers": 0}),
    ("target-attention readouts (vs mean pooling)", {"readout": "mean"}),
    ("SGD: two more denoiser evaluations and the groups (vs one condition)", {"guidance": "none"}),
    ("TCC losses (two more denoiser passes per evaluation)", {"use_recon": False, "use_tr": False}),
    ("fusion stage altogether (h_fusion = x0)", {"sampler": "none"}),
)


def profile_train_step(batch_size: int = 256, steps: int = 30, repeats: int = 2,
                       model_values: dict | None = None, parts=PROFILE_PARTS) -> dict:
    """ms per training step of the default HierDiffuse and of each of `parts` (a
    `PROFILE_PARTS` subset: `(name, config change)` pairs), and of DIN for scale; a
    part's share is the time it saves over the full step.

    Each variant trains in its own process (`train_throughput`, as `bench train`), in
    `repeats` rounds that visit every variant in turn; a variant's time is its best
    round. (Many models in one process timed bimodally: 44 or 63 ms for the same step.)
    """
    values = dict(model_values or {})
    variants = {"full": ("hierdiffuse", values),
                **{name: ("hierdiffuse", {**values, **change}) for name, change in parts},
                "din (for scale)": ("din", values)}
    best = best_throughputs(variants, batch_size, steps, repeats)
    ms = {name: 1000.0 * batch_size / row["examples_per_sec"] for name, row in best.items()}
    full = ms["full"]
    shares = [{"part": name, "ms": full - ms[name], "share": (full - ms[name]) / full}
              for name, _ in parts]
    return {"step_ms": ms, "parts": shares, "batch_size": batch_size, "steps": steps,
            "repeats": repeats, "machine": machine(tf.__version__), "load_average": os.getloadavg()[0],
            "date": utc_timestamp()}


def markdown_profile(result: dict) -> str:
    lines = ["| part removed | ms per step saved | share of the step |", "|---|---|---|"]
    lines += [f"| {p['part']} | {p['ms']:.1f} | {100 * p['share']:.0f} % |" for p in result["parts"]]
    ms = result["step_ms"]
    lines += ["", f"Full HierDiffuse step: {ms['full']:.1f} ms; DIN: {ms['din (for scale)']:.1f} ms. "
              "The rest of the step is the embeddings, the head, the BCE and the optimizer."]
    return "\n".join(lines) + (f"\n\n_Batch {result['batch_size']}, {result['machine']}, load average "
                               f"{result['load_average']:.1f} at the start, {result['date']}._\n")


def best_throughputs(jobs: dict, batch_size: int, steps: int, repeats: int) -> dict:
    """`train_throughput` of each job `{key: (model name, config values)}` in its own
    process; `repeats` rounds visit every job in turn, and each keeps its fastest row."""
    best = {}
    for _ in range(repeats):
        for key, (model, values) in jobs.items():
            row = run_isolated("training", f"train_throughput({model!r}, {batch_size}, {steps}, {values!r})")
            if key not in best or row["examples_per_sec"] > best[key]["examples_per_sec"]:
                best[key] = row
    return best


# `bench train`'s models: the speed issue's two targets are HierDiffuse against DIN
# (at least half DIN's rate) and the diffusion baselines against HierDiffuse (at
# most 3x its time per example, so that a table can afford them).
TRAIN_BENCH_MODELS = ("hierdiffuse", "din", "avg_pool_dnn", "diffurec", "dreamrec")
SLOW_BASELINES = ("diffurec", "dreamrec")
SLOW_BASELINE_LIMIT = 3.0


def bench_train(models=TRAIN_BENCH_MODELS, batch_size: int = 256, steps: int = 30,
                model_values: dict | None = None, repeats: int = 2) -> dict:
    """`train_throughput` of each model in its own process, so each peak memory is its own;
    `repeats` rounds visit every model in turn, and each model keeps its best round.

    Ratios: `<model>_over_hierdiffuse` (examples/s), `hierdiffuse_over_din`, and
    for DiffuRec and DreamRec `<model>_time_over_hierdiffuse`, their time per
    example over HierDiffuse's (the epoch-cost target, at most 3)."""
    best = best_throughputs({name: (name, model_values) for name in models}, batch_size, steps, repeats)
    rows = [best[name] for name in models]
    by = {r["model"]: r for r in rows}
    ratios = {f"{m}_over_hierdiffuse": by[m]["examples_per_sec"] / by["hierdiffuse"]["examples_per_sec"]
              for m in by if m != "hierdiffuse" and "hierdiffuse" in by}
    if "din_over_hierdiffuse" in ratios:  # The target of the speed issue: at least 0.5.
        ratios["hierdiffuse_over_din"] = 1.0 / ratios["din_over_hierdiffuse"]
        # The same by the compiled step called directly (no `fit` loop and its stalls).
        ratios["hierdiffuse_over_din_step"] = by["din"]["step_ms"] / by["hierdiffuse"]["step_ms"]
    for m in SLOW_BASELINES:  # Their target: at most SLOW_BASELINE_LIMIT.
        if f"{m}_over_hierdiffuse" in ratios:
            ratios[f"{m}_time_over_hierdiffuse"] = 1.0 / ratios[f"{m}_over_hierdiffuse"]
            ratios[f"{m}_time_over_hierdiffuse_step"] = by[m]["step_ms"] / by["hierdiffuse"]["step_ms"]
    return {"rows": rows, "ratios": ratios, "machine": machine(tf.__version__), "repeats": repeats,
            "load_average": os.getloadavg()[0],
            "date": utc_timestamp()}


def _step(row: dict) -> str:
    return f"{row['step_ms']:.1f} ({row['step_cpu_ms']:.1f})" if "step_ms" in row else "-"


def _by_step(ratios: dict, key: str) -> str:
    step = ratios.get(f"{key}_step")
    return "" if step is None else f"; by the step called directly, {step:.2f}x"


def markdown_throughput(result: dict) -> str:
    """The table of a `bench train` or `bench data` result."""
    if "rows" in result:
        lines = ["| model | training examples/s (`fit`) | step ms, called directly (CPU ms) | XLA | "
                 "peak RSS (MB) |", "|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['examples_per_sec']:.0f} | {_step(r)} | "
                  f"{'yes' if r.get('xla') else 'no'} | {r['peak_rss_mb']:.0f} |" for r in result["rows"]]
        ratios = result.get("ratios", {})
        ratio = ratios.get("hierdiffuse_over_din")
        if ratio is not None:
            lines += ["", f"HierDiffuse over DIN: {ratio:.2f}x (target >= 0.5: "
                          f"{'met' if ratio >= 0.5 else 'missed'}){_by_step(ratios, 'hierdiffuse_over_din')}."]
        for m in SLOW_BASELINES:
            slow = ratios.get(f"{m}_time_over_hierdiffuse")
            if slow is not None:
                lines += ["", f"{m}'s time per example over HierDiffuse's: {slow:.2f}x (target <= "
                              f"{SLOW_BASELINE_LIMIT:g}x: {'met' if slow <= SLOW_BASELINE_LIMIT else 'missed'})"
                              f"{_by_step(ratios, f'{m}_time_over_hierdiffuse')}."]
        batch = result["rows"][0]["batch_size"]
        share = result["rows"][0].get("session_share")
        if share is not None:
            batch = f"{batch} of random ids, {100 * share:.0f} % of its sessions holding behaviours"
    else:
        lines = ["| input pipeline | examples/s | HierDiffuse training examples/s | ratio | target |",
                 "|---|---|---|---|---|"]
        for label, rate, key in (("first epoch (decoding)", "data_examples_per_sec", "data_over_train"),
                                 ("later epochs (cached)", "cached_examples_per_sec", "cached_over_train")):
            if key in result["ratios"]:
                ratio = result["ratios"][key]
                lines.append(f"| {label} | {result[rate]:.0f} | {result['train_examples_per_sec']:.0f} | "
                             f"{ratio:.1f}x | >= 10x ({'met' if ratio >= 10 else 'missed'}) |")
        batch = result["batch_size"]
    rounds = f", best of {result['repeats']} rounds" if result.get("repeats") else ""
    load = f", load average {result['load_average']:.1f}" if "load_average" in result else ""
    return "\n".join(lines) + f"\n\n_Batch {batch}, {result['machine']}{rounds}{load}, {result['date']}._\n"


def bench_xla(models=None, batch_size: int = 256, steps: int = 20, repeats: int = 5,
              model_values: dict | None = None) -> dict:
    """Each model's training and scoring, compiled as a plain graph and with XLA.

    Training: examples/s of each compile in its own process (`train_throughput`).
    Scoring: batches/s of `compiled_scorer` with and without XLA, interleaved in
    this process. The rows are what chose each model's `jit_train` and `jit_predict`.
    """
    from hierdiffuse_tf.bench.timing import time_paths
    from hierdiffuse_tf.models import MODELS

    names = tuple(models or MODELS)
    values = {**DEFAULT_SHAPE, **(model_values or {})}
    rows, scorers = [], {}
    for name in names:
        train = {xla: run_isolated("training", f"train_throughput({name!r}, {batch_size}, {steps}, "
                                               f"{values!r}, xla={xla})")["examples_per_sec"]
                 for xla in (False, True)}
        model = build_model(name, values, shared=True)
        x = {k: tf.constant(v) for k, v in export.example_request(model.config, batch_size).items()}
        model(x)
        for xla in (False, True):
            fn = training.compiled_scorer(model, jit_compile=xla)
            scorers[(name, xla)] = lambda fn=fn, x=x: fn(x)
        rows.append({"model": name, "train_graph": train[False], "train_xla": train[True],
                     "jit_train": MODELS[name].jit_train, "jit_predict": MODELS[name].jit_predict})
    speed = time_paths({f"{n}/{x}": fn for (n, x), fn in scorers.items()}, repeats=repeats)
    for row in rows:
        row["score_graph"], row["score_xla"] = speed[f"{row['model']}/False"], speed[f"{row['model']}/True"]
    return {"rows": rows, "batch_size": batch_size, "steps": steps, "repeats": repeats,
            "machine": machine(tf.__version__), "load_average": os.getloadavg()[0], "date": utc_timestamp()}


def markdown_xla(result: dict) -> str:
    lines = ["| model | training ex/s: graph -> XLA | trains with XLA | scoring batches/s: graph -> XLA "
             "| scores with XLA |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['train_graph']:.0f} -> {r['train_xla']:.0f} | "
              f"{'yes' if r['jit_train'] else 'no'} | {r['score_graph']:.1f} -> {r['score_xla']:.1f} | "
              f"{'yes' if r['jit_predict'] else 'no'} |" for r in result["rows"]]
    return "\n".join(lines) + (f"\n\n_Batch {result['batch_size']}, {result['machine']}, load average "
                               f"{result['load_average']:.1f} at the start, {result['date']}._\n")


# `bench epoch`: the diffusion baselines' cost per epoch of a real dataset against
# HierDiffuse's, as `train` fits them (its target: at most SLOW_BASELINE_LIMIT).
EPOCH_BENCH_MODELS = ("hierdiffuse", *SLOW_BASELINES)


class EpochClock(keras.callbacks.Callback):
    """Records each epoch's wall seconds and its validation pass's."""

    def __init__(self):
        super().__init__()
        self.epochs, self.validation, self._started = [], [], {}

    def on_epoch_begin(self, epoch, logs=None):
        self._started["epoch"] = time.perf_counter()

    def on_test_begin(self, logs=None):
        self._started["test"] = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validation.append(time.perf_counter() - self._started["test"])

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(time.perf_counter() - self._started["epoch"])


def epoch_seconds(model_name: str, dataset: str, data_dir: str | None = None,
                  overrides=(), steps: int = 200) -> dict:
    """One model's seconds per epoch of `dataset`, as `train` compiles and fits it.

    Two short epochs of `steps` training steps each, each followed by the whole
    validation split (where DiffuRec and DreamRec run their samplers), after
    a first pass over the training split, which fills its cache as `train`'s
    first epoch does (the estimate is of the epochs after the first). The first
    short epoch pays the compiles; the second gives the step time and the
    validation pass, and the epoch is estimated as the split's steps at that
    step time plus the validation pass.
    """
    from hierdiffuse_tf.datasets import pipeline

    data = pipeline.open_dataset(dataset, data_dir, auto_prepare=False)
    model_cls, model_config, train_config = training.resolve_configs(model_name, data, overrides=overrides)
    keras.utils.set_random_seed(train_config.seed)
    model = training.compile_model(model_cls(model_config), train_config)
    size = train_config.batch_size
    # As `train` reads them: from memory after a first pass where `make_dataset` caches, made here.
    # Full batches only, so that the short last one (another shape: a retrace) is never timed.
    train, validation = (data.batches(split, size, shuffle=split == "train", seed=train_config.seed,
                                      shuffle_buffer=train_config.shuffle_buffer, cache=True,
                                      drop_remainder=split == "train")
                         for split in ("train", "validation"))
    cached = pipeline.kept_in_memory(data.builder, "train", shuffle=True)
    for _ in train if cached else ():
        pass
    clock = EpochClock()
    model.fit(train.repeat(), steps_per_epoch=steps, epochs=2, validation_data=validation,
              callbacks=[clock], verbose=0, shuffle=False)  # The pipeline shuffles.
    step_s = (clock.epochs[1] - clock.validation[1]) / steps
    split_steps = training.steps_per_epoch(data, train_config)
    return {"model": model_name, "step_ms": 1000.0 * step_s, "validation_seconds": clock.validation[1],
            "epoch_seconds": split_steps * step_s + clock.validation[1],
            "first_epoch_seconds": clock.epochs[0], "steps": steps, "steps_per_epoch": split_steps,
            "cached": cached,
            "batch_size": size, "xla": bool(model.jit_compile), "overrides": list(overrides)}


def bench_epoch(dataset: str, data_dir: str | None = None, models=EPOCH_BENCH_MODELS,
                common=(), steps: int = 200) -> dict:
    """`epoch_seconds` of each model in its own process, and the ratios
    `<model>_epoch_over_hierdiffuse` (the per-epoch target: at most 3)."""
    from hierdiffuse_tf.experiments.runs import overrides_for

    rows = [run_isolated("training", f"epoch_seconds({m!r}, {dataset!r}, {data_dir!r}, "
                                     f"{overrides_for(m, common, ())!r}, {steps})") for m in models]
    by = {r["model"]: r for r in rows}
    ratios = {f"{m}_epoch_over_hierdiffuse": by[m]["epoch_seconds"] / by["hierdiffuse"]["epoch_seconds"]
              for m in by if m != "hierdiffuse" and "hierdiffuse" in by}
    return {"rows": rows, "ratios": ratios, "dataset": dataset, "machine": machine(tf.__version__),
            "load_average": os.getloadavg()[0], "date": utc_timestamp()}


def markdown_epoch(result: dict) -> str:
    lines = ["| model | step ms | validation pass s | epoch s (estimated) | first epoch s (compiles, "
             f"{result['rows'][0]['steps']} steps) | XLA |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['step_ms']:.1f} | {r['validation_seconds']:.1f} | {r['epoch_seconds']:.0f} | "
              f"{r['first_epoch_seconds']:.1f} | {'yes' if r['xla'] else 'no'} |" for r in result["rows"]]
    for m in SLOW_BASELINES:
        ratio = result["ratios"].get(f"{m}_epoch_over_hierdiffuse")
        if ratio is not None:
            lines += ["", f"{m}'s time per epoch over HierDiffuse's: {ratio:.2f}x (target <= "
                          f"{SLOW_BASELINE_LIMIT:g}x: {'met' if ratio <= SLOW_BASELINE_LIMIT else 'missed'})."]
    row = result["rows"][0]
    return "\n".join(lines) + (f"\n\n_{result['dataset']}, batch {row['batch_size']}, {row['steps_per_epoch']} "
                               f"steps per epoch, {result['machine']}, load average "
                               f"{result['load_average']:.1f} at the start, {result['date']}._\n")
