"""The paper's tables, regenerated: `hierdiffuse experiment table1 | table2 | robustness | tune | compare | readme`.

Every run is a normal `training.train` run in `OUT/runs/<key>/seed<k>/`, so a
finished run is skipped when the command is run again (and a killed one
resumes from its `BackupAndRestore` checkpoint); its `config.json` and
`metrics.json` record its config, seed and git commit. Each table's rows
record their seeds and overrides, and its `meta` the git commit and the
command. `table1` and `table2` time inference speed (batches/s) for every row
in the same process, with one shared batch size, interleaving the models so
that machine noise hits them alike.
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import functools
import glob
import itertools
import json
import os
import random
import re
import statistics
import time
from typing import Sequence

import numpy as np

from hierdiffuse_tf import training
from hierdiffuse_tf.config import PAPER_AS_PRINTED, ConfigError, ModelConfig, TrainConfig, override_key
from hierdiffuse_tf.data import pipeline
from hierdiffuse_tf.models import MODELS, get_model_class

TABLE1_MODELS = ("avg_pool_dnn", "din", "dien", "diffurec", "dreamrec", "hierdiffuse")
# The paper's Table 1 (AUC), for the side-by-side view in docs/experiments.md.
PAPER_TABLE1 = {
    "avg_pool_dnn": (0.7689, 0.8539, 0.7512), "din": (0.7862, 0.8995, 0.7564),
    "dien": (0.8377, 0.9222, 0.7611), "diffurec": (0.8395, 0.9258, 0.7607),
    "dreamrec": (0.8421, 0.9286, 0.7619), "hierdiffuse": (0.8472, 0.9327, 0.7680),
}


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of Table 2: a training config plus inference-only changes."""

    group: str
    variant: str
    train: tuple = ()  # `--set` overrides that change the trained model.
    infer: tuple = ()  # Inference-only changes of the same trained model (the sampler).
    paper_auc: float | None = None
    paper_infer: float | None = None


TABLE2_ROWS = (
    Row("a", "w/ CFG", ("guidance=cfg",), paper_auc=0.7663, paper_infer=16.9),
    Row("a", "w/ SGD (ours)", paper_auc=0.7680, paper_infer=16.1),
    Row("b", "w/ Transformer", ("backbone=transformer",), paper_auc=0.7684, paper_infer=14.8),
    Row("b", "MLP (ours)", paper_auc=0.7680, paper_infer=16.1),
    Row("c", "w/o L_recon", ("use_recon=false",), paper_auc=0.7629, paper_infer=16.2),
    Row("c", "w/o L_TR", ("use_tr=false",), paper_auc=0.7669, paper_infer=16.4),
    Row("c", "ours", paper_auc=0.7680, paper_infer=16.1),
    Row("d", "w/ DDPM", infer=(("sampler", "ddpm"),), paper_auc=0.7682, paper_infer=9.98),
    Row("d", "w/ DDIM", infer=(("sampler", "ddim"),), paper_auc=0.7681, paper_infer=13.01),
    Row("d", "TCC (ours)", paper_auc=0.7680, paper_infer=16.1),
    Row("e", "+Short->none", ("direction=short_to_none",), paper_auc=0.7640, paper_infer=15.7),
    Row("e", "+Long->none", ("direction=long_to_none",), paper_auc=0.7644, paper_infer=15.5),
    Row("e", "+Short->Long", ("direction=short_to_long",), paper_auc=0.7647, paper_infer=16.0),
    Row("e", "+Long->Short (ours)", paper_auc=0.7680, paper_infer=16.1),
    # (f) is ours: SPEC 2b's changes to the paper's model, each turned off on its own, all of
    # them at once (the model as the paper prints it), and no fusion stage at all.
    Row("f", "paper as printed (SPEC 2)",
        tuple(f"{k}={str(v).lower()}" for k, v in PAPER_AS_PRINTED.items() if k != "session_recency")),
    Row("f", "w/ f_L transformer", ("long_encoder_layers=-1",)),
    Row("f", "w/o target readout", ("readout=mean",)),
    Row("f", "w/o encoder gate", ("encoder_gate=false",)),
    Row("f", "w/o x0 norm", ("normalize_x0=false",)),
    Row("f", "w/o h_S * e_t in the head", ("head_short_cross=false",)),
    Row("f", "head reads a noisy x_t*", ("head_on_clean=false",)),
    Row("f", "no fusion stage (h_fusion = x0)", ("sampler=none",)),
    Row("f", "ours (SPEC 2b)"),
)
# The tuning budget (`experiment tune`): every model gets the same search space and
# the same number of trials, one seed each, compared on the validation split only.
# Each field's default comes first; the defaults are trial 0.
TUNING_SPACE = (("learning_rate", (TrainConfig.learning_rate, 3e-3, 3e-4)),
                ("dropout", (ModelConfig.dropout, 0.0, 0.2)))
NOISE_CONFIGS = {0.0: "noise_0", 0.1: "noise_10", 0.2: "noise_20", 0.3: "noise_30", 0.5: "noise_50"}
ROBUSTNESS_MODELS = ("hierdiffuse", "din", "avg_pool_dnn")
_CLAIMED: dict[str, int] = {}  # run_dir -> the open, locked fd of its train.lock (`claim_run`).


def run_key(model: str, overrides: Sequence[str]) -> str:
    """A folder name for a model and its training overrides."""
    text = "__".join([model, *sorted(overrides)]) if overrides else model
    return re.sub(r"[^A-Za-z0-9_.=,-]", "_", text)


def claim_run(run_dir: str) -> bool:
    """Takes `run_dir` for this process; False while another process holds it.

    Two experiment processes may share one `--out` (say, `table1` and `table2`,
    which both train the full model): each run is trained by whichever process
    claims it first, and the other waits for its `metrics.json`. The claim is
    an exclusive `flock` on `run_dir/train.lock` (POSIX), which the kernel
    drops when its process dies, so a killed process's run is taken over with
    no guessing from the pid the file holds (written for people to read).
    """
    os.makedirs(run_dir, exist_ok=True)
    lock = os.path.join(run_dir, "train.lock")
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        if current is None or not os.path.samestat(os.fstat(fd), current):
            os.close(fd)  # Its holder released and removed it between our open and our lock.
            continue
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        _CLAIMED[os.path.abspath(run_dir)] = fd
        return True


def release_run(run_dir: str) -> None:
    """Gives `run_dir` back: removes its lock file, then drops the lock."""
    try:
        os.remove(os.path.join(run_dir, "train.lock"))
    except FileNotFoundError:
        pass
    fd = _CLAIMED.pop(os.path.abspath(run_dir), None)
    if fd is not None:
        os.close(fd)


def overrides_for(model: str, common: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """A table's `--set` pairs that apply to `model`, then the row's own overrides.

    `--set` reaches every model of a table; a field that only some of them
    have (say HierDiffuse's `loss_reduction`) applies to those and is skipped
    for the rest. A field that no model has is kept, so that the config
    rejects it by name (a typo never passes silently).
    """
    mine = set(get_model_class(model).config_cls.field_names()) | set(TrainConfig.field_names())
    known = mine.union(*(cls.config_cls.field_names() for cls in MODELS.values()))
    kept = [pair for pair in common if (key := override_key(pair)) in mine or key not in known]
    return [*kept, *overrides]


def train_runs(out: str, dataset: str, jobs: Sequence[tuple[str, tuple]], seeds: int,
               epochs: int | None, data_dir: str | None, common: Sequence[str] = (),
               poll_seconds: float = 30.0, eval_split: str = "test", reuse_from: str | None = None,
               wait: bool = True) -> dict | None:
    """Trains each (model, overrides) with every seed, skipping finished runs.

    Runs held by another process (see `claim_run`) are left for last and
    waited for, so parallel experiment processes never train the same run;
    with `wait=False` they are left to that process, and the call returns
    None once it has trained all it could (a caller with more work goes on
    to it, and waits later).
    A run that `reuse_from/runs/` already trained under today's config and
    the same seed is not trained again: its model is evaluated on
    `eval_split` (`training.reevaluate`).
    """
    pending = [(model, overrides, seed) for model, overrides in jobs for seed in range(seeds)]
    finished, total = {}, len(pending)
    while pending:
        waiting = []
        for model, overrides, seed in pending:
            key = run_key(model, overrides)
            run_dir = os.path.join(out, "runs", key, f"seed{seed}")
            metrics_path = os.path.join(run_dir, "metrics.json")
            step = f"[{len(finished) + 1}/{total}]"
            run_overrides = overrides_for(model, common, overrides)
            made_here = False
            if not os.path.exists(metrics_path):
                if not claim_run(run_dir):
                    waiting.append((model, overrides, seed))
                    continue
                try:
                    # Another process may have finished it while we looked elsewhere.
                    made_here = not os.path.exists(metrics_path)
                    source = made_here and _reusable_run(reuse_from, key, seed, model, dataset,
                                                         data_dir, run_overrides, epochs)
                    if source:
                        print(f"{step} {key} seed {seed}: evaluating {source} on {eval_split} "
                              "(the same config and seed, so not trained again)", flush=True)
                        training.reevaluate(source, run_dir, eval_split, data_dir, verbose=2)
                    elif made_here:
                        print(f"{step} training {key} seed {seed}", flush=True)
                        training.train(model, dataset, run_dir, data_dir=data_dir, epochs=epochs,
                                       seed=seed, overrides=run_overrides, verbose=2,
                                       eval_split=eval_split)
                finally:
                    release_run(run_dir)
            if not made_here:
                drift = config_drift(run_dir, model, dataset, data_dir, run_overrides, epochs, seed)
                if drift:
                    raise ConfigError(
                        f"{run_dir} finished under another config than the one the code builds now "
                        f"({'; '.join(drift)}), so its results would not be this row's. Move the "
                        "folder aside to keep it (e.g. under a key naming the old value) or delete it to retrain")
                print(f"{step} {key} seed {seed}: done already", flush=True)
            metrics = _read_json(metrics_path)
            if metrics.get("split", "test") != eval_split:  # E.g. a tuning run in a table's folder.
                raise ConfigError(f"{metrics_path} was evaluated on {metrics.get('split')!r}, not "
                                  f"{eval_split!r}: keep tuning runs (`experiment tune`) and table runs apart")
            finished[(key, seed)] = {**metrics, "run_dir": run_dir}
        if waiting and len(waiting) == len(pending):
            if not wait:
                return None
            names = ", ".join(f"{run_key(m, o)} seed {s}" for m, o, s in waiting)
            print(f"waiting for another process to finish: {names}", flush=True)
            time.sleep(poll_seconds)
        pending = waiting
    results = {}
    for model, overrides in jobs:
        key = run_key(model, overrides)
        results[key] = [finished[(key, seed)] for seed in range(seeds)]
    return results


def _reusable_run(reuse_from: str | None, key: str, seed: int, model: str, dataset: str,
                  data_dir: str | None, overrides: Sequence[str], epochs: int | None) -> str | None:
    """`reuse_from`'s finished run of `key` and `seed`, if today's code would train it alike."""
    if not reuse_from:
        return None
    run_dir = os.path.join(reuse_from, "runs", key, f"seed{seed}")
    if not all(os.path.exists(os.path.join(run_dir, name))
               for name in ("config.json", "model.keras", "metrics.json")):
        return None
    if _read_json(os.path.join(run_dir, "config.json")).get("dataset") != dataset:
        return None
    return None if config_drift(run_dir, model, dataset, data_dir, overrides, epochs, seed) else run_dir


@functools.lru_cache(maxsize=8)
def _prepared_builder(dataset: str, data_dir: str | None):
    """One builder per dataset for the drift checks of a whole table."""
    return pipeline.prepared_builder(dataset, data_dir, auto_prepare=False)


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def config_drift(run_dir: str, model: str, dataset: str, data_dir: str | None,
                 overrides: Sequence[str], epochs: int | None, seed: int) -> list[str]:
    """`field: recorded -> now` for each config field where a finished run differs from
    what `training.train` would build today (say, after a default changed).

    A field that the run's `config.json` does not record is compared through
    its config class's `LEGACY_DEFAULTS` value, or not at all if it has none.
    Code changes that leave the config alone are not seen (the run records
    its git commit for those).
    """
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return []
    recorded = _read_json(path)
    builder = _prepared_builder(dataset, data_dir)
    _, model_config, train_config = training.resolve_configs(model, builder, None, overrides, epochs, seed)
    drift = []
    for part, config in (("model_config", model_config), ("train_config", train_config)):
        now = json.loads(json.dumps(config.to_dict()))  # Tuples as the JSON lists that were recorded.
        then = {**config.LEGACY_DEFAULTS, **recorded.get(part, {})}
        drift += [f"{k}: {then[k]!r} -> {now[k]!r}" for k in sorted(then.keys() & now.keys())
                  if then[k] != now[k]]
    return drift


def with_inference_changes(model, changes: Sequence[tuple[str, object]]):
    """The same weights under a config with inference-only changes (e.g. the sampler)."""
    if not changes:
        return model
    clone = type(model)(model.config.replace(**dict(changes)))
    clone(clone.example_inputs(), training=False)
    clone.set_weights(model.get_weights())
    return clone


def time_inference(models: dict, batches: list, repeats: int = 5) -> dict:
    """Median batches/s of each model over the same batches, interleaved across models."""
    fns = {name: training.compiled_scorer(m, reduce_retracing=True) for name, m in models.items()}
    for fn in fns.values():  # Warm-up: trace and run once.
        fn(batches[0]).numpy()
    timings = {name: [] for name in models}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for batch in batches:
                fn(batch)
            fn(batches[-1]).numpy()
            timings[name].append((len(batches) + 1) / (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in timings.items()}


def recorded_speed(run_metrics: dict, batch_size: int) -> float:
    """Batches/s of `batch_size` that a run's own evaluation measured (pipeline included):
    the fallback where its `model.keras`, which git does not keep, is absent."""
    return run_metrics["examples"] / run_metrics["eval_seconds"] / batch_size


def table_speeds(first_runs: dict, dataset: str, data_dir: str | None, batch_size: int,
                 count: int) -> tuple[dict, dict]:
    """Inference speed per row from each row's seed-0 run: `(batches/s, source)`.

    Models present are re-timed together, interleaved (`time_inference`); a row
    whose model is absent gets the speed its evaluation recorded, and its source
    says so, since recorded speeds come from other moments of the machine.
    """
    present = {k: m for k, m in first_runs.items()
               if os.path.exists(os.path.join(m["run_dir"], "model.keras"))}
    loaded = {k: training.load_run_model(m["run_dir"]) for k, m in present.items()}
    speed = time_inference(loaded, timing_batches(dataset, data_dir, batch_size, count)) if loaded else {}
    source = {k: "re-timed" if k in speed else "recorded at evaluation" for k in first_runs}
    for k, m in first_runs.items():
        speed.setdefault(k, recorded_speed(m, batch_size))
    return speed, source


def timing_batches(dataset: str, data_dir: str | None, batch_size: int, count: int) -> list:
    builder = _prepared_builder(dataset, data_dir)
    ds = pipeline.make_dataset(builder, "test", batch_size, drop_remainder=True).take(count)
    batches = [features for features, _ in ds]
    if not batches:
        raise pipeline.DatasetError(f"The test split of {dataset} has fewer than {batch_size} examples")
    return batches


def auc_of(run_metrics: list, dataset=None, data_dir=None, changes=()) -> list[float]:
    """Per-seed test AUCs; with inference changes, each seed's model is re-evaluated."""
    if not changes:
        return [m["auc"] for m in run_metrics]
    builder = _prepared_builder(dataset, data_dir)
    aucs = []
    for m in run_metrics:
        base = training.load_run_model(m["run_dir"])
        ds = pipeline.make_dataset(builder, "test", 1024)
        aucs.append(training.evaluate(with_inference_changes(base, changes), ds, verbose=0)["auc"])
    return aucs


def summary(aucs: list[float], loglosses: list[float] | None = None) -> dict:
    out = {"auc_mean": float(np.mean(aucs)), "auc_std": float(np.std(aucs)), "aucs": aucs,
           "auc_pm": f"{np.mean(aucs):.4f} ± {np.std(aucs):.4f}"}
    if loglosses:
        out["logloss_mean"] = float(np.mean(loglosses))
    return out


def write_table(rows: list[dict], columns: list[tuple[str, str, str]], out: str, name: str,
                meta: dict) -> None:
    """Writes `name.json` (rows and meta), `name.csv` and `name.md` (the columns only).

    `columns` are `(key, title, format)`; the format is a `str.format` spec.
    """
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2, default=str)
    with open(os.path.join(out, f"{name}.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([title for _, title, _ in columns])
        writer.writerows([[_cell(r.get(k), f) for k, _, f in columns] for r in rows])
    lines = ["| " + " | ".join(t for _, t, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(k), f) for k, _, f in columns) + " |" for r in rows]
    batch = f"inference batch size {meta['batch_size']}, " if meta.get("batch_size") else ""
    epochs = "epochs as configured" if meta["epochs"] is None else f"{meta['epochs']} epoch(s)"
    caption = (f"\n_{meta['dataset']}, {meta['seeds']} seed(s), {epochs}, "
               f"{batch}commit {_short_commit(meta['git_commit'])}; "
               f"made by `{meta['command']}`._\n")
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n" + caption)


def check_table_name(name: str) -> None:
    """A table's file name is one word, so that a docs block `<!-- results:NAME -->` can name it."""
    if not re.fullmatch(r"\w+", name):
        raise ConfigError(f"--name: {name!r} is not a table name; use letters, digits and '_' "
                          "(say, table1_defaults)")


def _short_commit(commit: str | None) -> str:
    text = str(commit)
    return text[:10] + ("-dirty" if text.endswith("-dirty") else "")


def _cell(value, fmt: str) -> str:
    return "" if value is None else fmt.format(value)


def _meta(dataset, seeds, epochs, batch_size, command) -> dict:
    return {"dataset": dataset, "seeds": seeds, "epochs": epochs, "batch_size": batch_size,
            "git_commit": training.git_commit(), "command": command,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def tuning_trials(trials: int, seed: int = 0) -> list[tuple[str, ...]]:
    """`trials` override sets from `TUNING_SPACE`: the defaults (no overrides) first,
    then a seeded shuffle of the other combinations, the same for every model."""
    names = [name for name, _ in TUNING_SPACE]
    combos = list(itertools.product(*(values for _, values in TUNING_SPACE)))
    rest = combos[1:]
    random.Random(seed).shuffle(rest)
    if not 1 <= trials <= len(combos):
        raise ConfigError(f"--trials must be in [1, {len(combos)}] (the size of TUNING_SPACE). "
                          f"Received: {trials}")
    defaults = combos[0]
    return [tuple(f"{n}={v}" for n, v, d in zip(names, combo, defaults) if v != d)
            for combo in [defaults, *rest][:trials]]


def tune(dataset: str, out: str, models: Sequence[str] = TABLE1_MODELS, trials: int = 4,
         epochs: int | None = None, data_dir: str | None = None,
         common: Sequence[str] = (), command: str = "") -> dict:
    """The same tuning budget for every model, on the validation split; writes tuning.{json,md,csv}.

    Each model trains once (seed 0) per trial of `tuning_trials`, under
    `out/tuning/runs/`, and is evaluated on validation only; a table's seed-0
    run under the same config (`out/runs/`) is evaluated instead of trained
    again. Selection reads validation only. `tuning.json`'s
    `meta.best` maps each model to its winning overrides, which `table1`/`table2`
    take with `tuned=load_tuned(path)`.
    """
    _check_untuned_keys(common, "--set")
    candidates = tuning_trials(trials)
    runs = train_runs(os.path.join(out, "tuning"), dataset, [(m, t) for m in models for t in candidates],
                      1, epochs, data_dir, common, eval_split="validation", reuse_from=out)
    rows, best = [], {}
    for m in models:
        aucs = [runs[run_key(m, t)][0]["auc"] for t in candidates]
        if not np.isfinite(aucs).any():
            raise ConfigError(f"tune: every trial of {m} diverged (validation AUC {aucs}); "
                              "nothing to choose. Look at its runs under tuning/runs/")
        winner = int(np.nanargmax(np.where(np.isfinite(aucs), aucs, np.nan)))  # A diverged trial never wins.
        best[m] = list(candidates[winner])
        rows += [{"model": m, "trial": i, "overrides": " ".join(t) or "(defaults)", "val_auc": auc,
                  "chosen": "yes" if i == winner else ""} for i, (t, auc) in enumerate(zip(candidates, aucs))]
    columns = [("model", "model", "{}"), ("trial", "trial", "{}"), ("overrides", "overrides", "{}"),
               ("val_auc", "validation AUC", "{:.4f}"), ("chosen", "chosen", "{}")]
    meta = {**_meta(dataset, 1, epochs, None, command), "trials": trials,
            "space": {name: list(values) for name, values in TUNING_SPACE}, "best": best,
            "selected_on": "validation"}
    write_table(rows, columns, out, "tuning", meta)
    return best


def compare(dataset: str, out: str, variants: Sequence[Sequence[str]], model: str = "hierdiffuse",
            seeds: int = 1, epochs: int | None = None, data_dir: str | None = None,
            common: Sequence[str] = (), command: str = "") -> list[dict]:
    """Config variants of one model against its defaults, on the validation split only.

    A diagnostic: it answers "what does this switch do?" without reading test.
    The tables never take a setting from here; they use the defaults or what
    `tune` chose, with the same budget for every model. The runs live beside
    `tune`'s (`out/tuning/runs`), so the defaults train once for both. Writes
    `compare_<model>.{json,md,csv}` and `compare_<model>_curves.png`
    (validation AUC per epoch).
    """
    candidates = list(dict.fromkeys([(), *(tuple(v) for v in variants if v)]))
    runs = train_runs(os.path.join(out, "tuning"), dataset, [(model, v) for v in candidates], seeds,
                      epochs, data_dir, common, eval_split="validation", reuse_from=out)
    by_label = {" ".join(v) or "(defaults)": (v, runs[run_key(model, v)]) for v in candidates}
    curves = learning_curves({label: metrics for label, (_, metrics) in by_label.items()})
    base = float(np.mean([m["auc"] for m in runs[run_key(model, ())]]))
    rows = []
    for label, (v, metrics) in by_label.items():
        stats = summary([m["auc"] for m in metrics], [m["logloss"] for m in metrics])
        rows.append({"model": model, "variant": label, "overrides": list(v), **stats,
                     "delta": stats["auc_mean"] - base,
                     "val_auc_epoch1": curves.get(label, {}).get("mean", [None])[0],
                     "seeds": list(range(seeds))})
    columns = [("variant", "variant", "{}"), ("auc_pm", "validation AUC (mean ± std)", "{}"),
               ("delta", "Δ vs defaults", "{:+.4f}"), ("val_auc_epoch1", "after epoch 1", "{:.4f}"),
               ("logloss_mean", "log loss", "{:.4f}")]
    name = f"compare_{model}"
    write_table(rows, columns, out, name, {**_meta(dataset, seeds, epochs, None, command),
                                           "selected_on": "validation", "val_auc_by_epoch": curves})
    plot_learning_curves(curves, os.path.join(out, f"{name}_curves.png"),
                         f"{model} variants on {dataset} (validation)")
    return rows


def _check_untuned_keys(overrides: Sequence[str], where: str) -> None:
    """Tuned fields cannot also be set by hand: one would silently override the other."""
    tuned_keys = {name for name, _ in TUNING_SPACE}
    clash = sorted({override_key(o) for o in overrides} & tuned_keys)
    if clash:
        raise ConfigError(f"{where}: {clash} belong to the tuning space ({sorted(tuned_keys)}); "
                          "set them through `experiment tune` and `--tuned`, not by hand")


def load_tuned(path: str) -> dict:
    """Each model's winning overrides from a `tuning.json` written by `tune`.

    Returns `{"path": ..., "best": {model: (overrides...)}}` for `table1`/`table2`.
    """
    data = _read_json(path)
    best = data.get("meta", {}).get("best") if isinstance(data, dict) else None
    if not isinstance(best, dict):
        raise ConfigError(f"--tuned: {path} has no `meta.best`; write it with `hierdiffuse experiment tune`")
    for model, overrides in best.items():
        if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
            raise ConfigError(f"--tuned: {path}: `meta.best.{model}` must be a list of 'key=value' "
                              f"strings. Received: {overrides!r}")
    return {"path": path, "best": {model: tuple(overrides) for model, overrides in best.items()}}


def tuned_overrides(tuned: dict | None, models: Sequence[str], common: Sequence[str]) -> dict:
    """Each model's tuned overrides (empty without `tuned`); every model must have been tuned."""
    if not tuned:
        return {m: () for m in models}
    missing = sorted(set(models) - set(tuned["best"]))
    if missing:
        raise ConfigError(f"--tuned: {tuned['path']} has no entry for {missing}; it tuned "
                          f"{sorted(tuned['best'])}. Run `experiment tune` for them too")
    _check_untuned_keys(common, "--set with --tuned")
    return {m: tuned["best"][m] for m in models}


def table1(dataset: str, out: str, seeds: int = 3, epochs: int | None = None,
           data_dir: str | None = None, models: Sequence[str] = TABLE1_MODELS,
           batch_size: int = 256, timing_batches_count: int = 20, common: Sequence[str] = (),
           command: str = "", tuned: dict | None = None, name: str = "table1") -> list[dict]:
    """Trains every Table 1 model with `seeds` seeds; writes `name`.{json,md,csv} and `name`_curves.png.

    `tuned` (from `load_tuned`) adds each model's tuned overrides to its runs;
    a winner's seed-0 tuning run (`out/tuning/runs/`) is evaluated on test
    instead of trained again. Another `name` keeps a second table beside the
    first under one `out`, drawn from the same runs (say, the defaults' table
    beside the tuned one).
    """
    check_table_name(name)
    per_model = tuned_overrides(tuned, models, common)
    keys = {m: run_key(m, per_model[m]) for m in models}
    runs = train_runs(out, dataset, [(m, per_model[m]) for m in models], seeds, epochs, data_dir, common,
                      reuse_from=os.path.join(out, "tuning"))
    speed, speed_source = table_speeds({m: runs[keys[m]][0] for m in models}, dataset, data_dir,
                                       batch_size, timing_batches_count)
    rows = []
    for m in models:
        metrics = runs[keys[m]]
        paper = PAPER_TABLE1.get(m, (None, None, None))
        rows.append({"model": m, **summary([r["auc"] for r in metrics], [r["logloss"] for r in metrics]),
                     "gauc_mean": float(np.mean([r["gauc"] for r in metrics])),
                     "batches_per_sec": speed[m], "speed_source": speed_source[m],
                     "paper_amazon": paper[0], "paper_taobao": paper[1],
                     "seeds": list(range(seeds)), "tuned_overrides": list(per_model[m]),
                     "config": _read_json(os.path.join(metrics[0]["run_dir"], "config.json"))})
    columns = [("model", "model", "{}"), ("auc_pm", "AUC (mean ± std)", "{}"),
               ("logloss_mean", "log loss", "{:.4f}"), ("gauc_mean", "GAUC", "{:.4f}"),
               ("batches_per_sec", "infer. batches/s", "{:.1f}"), ("speed_source", "speed", "{}"),
               ("paper_amazon", "paper: Amazon", "{:.4f}"), ("paper_taobao", "paper: Taobao", "{:.4f}")]
    curves = learning_curves({m: runs[keys[m]] for m in models})
    for row in rows:
        row["val_auc_by_epoch"] = curves.get(row["model"], {}).get("mean")
    write_table(rows, columns, out, name, {**_meta(dataset, seeds, epochs, batch_size, command),
                                           "tuned_from": tuned})
    plot_learning_curves(curves, os.path.join(out, f"{name}_curves.png"),
                         f"Table 1 models on {dataset} ({seeds} seeds)")
    return rows


def table2(dataset: str, out: str, seeds: int = 3, epochs: int | None = None,
           data_dir: str | None = None, rows_spec: Sequence[Row] = TABLE2_ROWS,
           batch_size: int = 256, timing_batches_count: int = 20, common: Sequence[str] = (),
           command: str = "", tuned: dict | None = None, name: str = "table2") -> list[dict]:
    """Trains every distinct Table 2 variant; inference-only rows reuse the full model.

    `tuned` (from `load_tuned`) adds HierDiffuse's tuned overrides to every row
    (the tuning run of the winner is reused as in `table1`); `name` is as in `table1`.
    """
    check_table_name(name)
    full_rows = [r.variant for r in rows_spec if not r.train and not r.infer]
    if not full_rows:  # Checked before any training.
        raise ConfigError("Table 2 needs at least one row of the full model to take deltas against")
    base_overrides = tuned_overrides(tuned, ["hierdiffuse"], common)["hierdiffuse"]
    jobs = list(dict.fromkeys(("hierdiffuse", base_overrides + r.train) for r in rows_spec))
    runs = train_runs(out, dataset, jobs, seeds, epochs, data_dir, common,
                      reuse_from=os.path.join(out, "tuning"))
    models, aucs = {}, {}
    for r in rows_spec:
        metrics = runs[run_key("hierdiffuse", base_overrides + r.train)]
        base = training.load_run_model(metrics[0]["run_dir"])
        models[r.variant] = with_inference_changes(base, r.infer)
        aucs[r.variant] = auc_of(metrics, dataset=dataset, data_dir=data_dir, changes=r.infer)
    speed = time_inference(models, timing_batches(dataset, data_dir, batch_size, timing_batches_count))
    full = float(np.mean(aucs[full_rows[0]]))
    rows = []
    for r in rows_spec:
        stats = summary(aucs[r.variant])
        rows.append({"group": r.group, "variant": r.variant, **stats,
                     "delta": stats["auc_mean"] - full, "batches_per_sec": speed[r.variant],
                     "paper_auc": r.paper_auc, "paper_infer": r.paper_infer,
                     "train_overrides": list(r.train), "tuned_overrides": list(base_overrides),
                     "inference_changes": dict(r.infer),
                     "seeds": list(range(seeds))})
    columns = [("group", "table", "2({})"), ("variant", "variant", "{}"),
               ("auc_pm", "AUC (mean ± std)", "{}"), ("delta", "Δ vs ours", "{:+.4f}"),
               ("batches_per_sec", "infer. batches/s", "{:.1f}"), ("paper_auc", "paper AUC", "{:.4f}"),
               ("paper_infer", "paper infer.", "{:.2f}")]
    # One learning curve per trained variant; the full model's several rows share one.
    labels = {run_key("hierdiffuse", base_overrides + r.train): r.variant if r.train else "full model"
              for r in rows_spec if not r.infer}
    curves = learning_curves({labels[k]: v for k, v in runs.items() if k in labels})
    write_table(rows, columns, out, name, {**_meta(dataset, seeds, epochs, batch_size, command),
                                           "tuned_from": tuned,
                                           "val_auc_by_epoch": curves})
    plot_learning_curves(curves, os.path.join(out, f"{name}_curves.png"),
                         f"Table 2 variants on {dataset} ({seeds} seeds)")
    return rows


def robustness(out: str, noise: Sequence[float], seeds: int = 3, epochs: int | None = None,
               data_dir: str | None = None, models: Sequence[str] = ROBUSTNESS_MODELS,
               common: Sequence[str] = (), command: str = "") -> list[dict]:
    """AUC against the noise-click rate on `synthetic_interest_ctr`; writes a table and a plot."""
    unknown = [n for n in noise if n not in NOISE_CONFIGS]
    if unknown:
        raise ConfigError(f"--noise: no synthetic config for {unknown}; known rates: {sorted(NOISE_CONFIGS)}")

    def noise_runs(rate: float, wait: bool):
        dataset = f"synthetic_interest_ctr/{NOISE_CONFIGS[rate]}"
        pipeline.prepared_builder(dataset, data_dir)
        return train_runs(os.path.join(out, NOISE_CONFIGS[rate]), dataset, [(m, ()) for m in models],
                          seeds, epochs, data_dir, common, wait=wait)

    for rate in noise:  # Every run that no other process holds, before waiting for any.
        noise_runs(rate, wait=False)
    rows = []
    for rate in noise:
        runs = noise_runs(rate, wait=True)
        for m in models:
            metrics = runs[run_key(m, ())]
            stats = summary([r["auc"] for r in metrics], [r["logloss"] for r in metrics])
            rows.append({"noise": rate, "model": m, **stats,
                         "seeds": list(range(seeds))})
    columns = [("noise", "noise-click rate", "{:.1f}"), ("model", "model", "{}"),
               ("auc_pm", "AUC (mean ± std)", "{}"), ("logloss_mean", "log loss", "{:.4f}")]
    write_table(rows, columns, out, "robustness",
                _meta("synthetic_interest_ctr", seeds, epochs, None, command))
    plot_robustness(rows, os.path.join(out, "robustness.png"))
    return rows


def _axes(figsize=(5.5, 3.6)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, dpi=120)


def _save(fig, ax, path: str) -> None:
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def learning_curves(runs: dict) -> dict:
    """Validation AUC per epoch, mean and std over seeds: `{key: {"epoch", "mean", "std"}}`.

    `runs` is `train_runs`' result. Epochs that not every seed reached are left out.
    """
    curves = {}
    for key, metrics in runs.items():
        per_seed = [m.get("history", {}).get("val_auc", []) for m in metrics]
        epochs = min((len(h) for h in per_seed), default=0)
        if epochs:
            values = np.array([h[:epochs] for h in per_seed], dtype=float)
            curves[key] = {"epoch": list(range(1, epochs + 1)), "mean": values.mean(0).tolist(),
                           "std": values.std(0).tolist()}
    return curves


def plot_learning_curves(curves: dict, path: str, title: str) -> None:
    """Validation AUC against the epoch for each run key (error bars: std over seeds)."""
    fig, ax = _axes((6.0, 4.0))
    for key, c in curves.items():
        ax.errorbar(c["epoch"], c["mean"], yerr=c["std"], marker="o", capsize=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation AUC")
    ax.set_xticks(sorted({e for c in curves.values() for e in c["epoch"]}))
    ax.set_title(title)
    _save(fig, ax, path)


def plot_robustness(rows: list[dict], path: str) -> None:
    fig, ax = _axes()
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        ax.errorbar([r["noise"] for r in mine], [r["auc_mean"] for r in mine],
                    yerr=[r["auc_std"] for r in mine], marker="o", capsize=3, label=model)
    ax.set_xlabel("noise-click rate in the histories")
    ax.set_ylabel("test AUC")
    ax.set_title("Robustness to noisy interactions (synthetic_interest_ctr)")
    _save(fig, ax, path)


def splice_readme(readme: str, results: str) -> list[str]:
    """Replaces each `<!-- results:NAME -->...<!-- /results:NAME -->` block with results/NAME.md.

    Each marker stands on a line of its own. A block may name its folder, `<!-- results:FOLDER/NAME -->`: it is filled
    only when `results` is that folder (by its last path part), so two folders
    that both hold a `NAME.md` (say, a table and its record under other
    settings) each keep their own block.
    """
    with open(readme) as f:
        text = f.read()
    replaced = []
    folder = os.path.basename(os.path.normpath(results))

    def fill(match):
        name = match.group(1)
        owner, _, base = name.rpartition("/")
        path = os.path.join(results, f"{base}.md")
        if owner not in ("", folder) or not os.path.exists(path):
            return match.group(0)
        replaced.append(name)
        with open(path) as f:
            return f"<!-- results:{name} -->\n{f.read().strip()}\n<!-- /results:{name} -->"

    # Markers count on lines of their own only, so prose may quote them.
    text = re.sub(r"^<!-- results:((?:[\w.-]+/)?\w+) -->$.*?^<!-- /results:\1 -->$", fill, text,
                  flags=re.S | re.M)
    with open(readme, "w") as f:
        f.write(text)
    return replaced


def splice_docs(results: str, files: Sequence[str] | None = None) -> dict[str, list[str]]:
    """`splice_readme` over each Markdown file that holds a `<!-- results:NAME -->` block; what it filled, per file.

    By default the files are README.md and every docs/*.md of the current directory (the repository root).
    """
    if files is None:
        files = [f for f in ["README.md", *sorted(glob.glob(os.path.join("docs", "*.md")))] if os.path.exists(f)]
        if not files:
            raise FileNotFoundError(f"no README.md or docs/*.md in {os.getcwd()}; run from the repository root")
    spliced = {}
    for path in files:
        with open(path) as f:
            if not re.search(r"^<!-- results:", f.read(), flags=re.M):
                continue  # No block: the file is left as it is, not rewritten.
        spliced[path] = splice_readme(path, results)
    return spliced

