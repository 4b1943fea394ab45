"""The equal tuning budget (`experiment tune`) and one model's variants (`experiment compare`),
both on the validation split only."""

from __future__ import annotations

import itertools
import os
import random
from typing import Sequence

import numpy as np

from hierdiffuse_tf.config import ConfigError, ModelConfig, TrainConfig, override_key
from hierdiffuse_tf.datasets import pipeline
from hierdiffuse_tf.experiments.report import (learning_curves, plot_learning_curves, summary, table_meta,
                                               write_table)
from hierdiffuse_tf.experiments.runs import best_epochs, run_dir_of, run_key, train_runs
from hierdiffuse_tf.models import MODELS
from hierdiffuse_tf.utils import read_json


# The tuning budget (`experiment tune`): every model gets the same search space and
# the same number of trials, one seed each, compared on the validation split only.
# Each field's default comes first; the defaults are trial 0.
TUNING_SPACE = (("learning_rate", (TrainConfig.learning_rate, 3e-3, 3e-4)),
                ("dropout", (ModelConfig.dropout, 0.0, 0.2)))


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


def tune(dataset: str | pipeline.PreparedDataset,
         out: str, models: Sequence[str] = tuple(MODELS), trials: int = 4,
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
    check_untuned_keys(common, "--set")
    candidates = tuning_trials(trials)
    data = pipeline.open_dataset(dataset, data_dir)
    runs = train_runs(os.path.join(out, "tuning"), data, [(m, t) for m in models for t in candidates],
                      1, epochs, data_dir, common, eval_split="validation", reuse_from=out)
    rows, best = [], {}
    for m in models:
        trial_runs = [runs[run_key(m, t)][0] for t in candidates]
        winner = winning_trial(m, [trial_score(r) for r in trial_runs])
        best[m] = list(candidates[winner])
        rows += [{"model": m, "trial": i, "overrides": " ".join(t) or "(defaults)", "val_auc": r["auc"],
                  "best_epochs": best_epochs([r]), "chosen": "yes" if i == winner else ""}
                 for i, (t, r) in enumerate(zip(candidates, trial_runs))]
    columns = [("model", "model", "{}"), ("trial", "trial", "{}"), ("overrides", "overrides", "{}"),
               ("val_auc", "validation AUC", "{:.4f}"), ("best_epochs", "best val. epoch / epochs run", "{}"),
               ("chosen", "chosen", "{}")]
    meta = {**table_meta(data.name, 1, epochs, None, command, runs), "trials": trials,
            "space": {name: list(values) for name, values in TUNING_SPACE}, "best": best,
            "selected_on": "validation"}
    write_table(rows, columns, out, "tuning", meta)
    return best


def trial_score(metrics: dict) -> float:
    """A trial's validation AUC, or NaN for a run that diverged: one whose log loss is not
    finite, whatever number its AUC reads (an AUC of NaN scores need not be NaN itself)."""
    return metrics["auc"] if np.isfinite(metrics.get("logloss", 0.0)) else float("nan")


def winning_trial(model: str, aucs: Sequence[float]) -> int:
    """The index of the trial with the best validation AUC; a diverged trial never wins."""
    if not np.isfinite(aucs).any():
        raise ConfigError(f"tune: every trial of {model} diverged (validation AUC {list(aucs)}); "
                          "nothing to choose. Look at its runs under tuning/runs/")
    return int(np.nanargmax(np.where(np.isfinite(aucs), aucs, np.nan)))


def winners_so_far(out: str, models: Sequence[str], trials: int) -> dict[str, tuple[str, ...]]:
    """Each model's winning overrides, as `tune` under `out` will choose them, for the models
    whose trials have all finished (`out/tuning/runs/<key>/seed0/metrics.json`); the others
    are left out. `reproduce` trains those models' table runs while other trials still run."""
    candidates = tuning_trials(trials)
    best = {}
    for m in models:
        paths = [os.path.join(run_dir_of(os.path.join(out, "tuning"), run_key(m, t), 0), "metrics.json")
                 for t in candidates]
        if all(os.path.exists(path) for path in paths):
            scores = [trial_score(read_json(path, required=True)) for path in paths]
            best[m] = candidates[winning_trial(m, scores)]
    return best


def compare(dataset: str | pipeline.PreparedDataset,
            out: str, variants: Sequence[Sequence[str]], model: str = "hierdiffuse",
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
    data = pipeline.open_dataset(dataset, data_dir)
    runs = train_runs(os.path.join(out, "tuning"), data, [(model, v) for v in candidates], seeds,
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
                     "best_epochs": best_epochs(metrics), "seeds": list(range(seeds))})
    columns = [("variant", "variant", "{}"), ("auc_pm", "validation AUC (mean ± std)", "{}"),
               ("delta", "Δ vs defaults", "{:+.4f}"), ("val_auc_epoch1", "after epoch 1", "{:.4f}"),
               ("logloss_mean", "log loss", "{:.4f}"), ("best_epochs", "best val. epoch / epochs run (per seed)", "{}")]
    name = f"compare_{model}"
    write_table(rows, columns, out, name, {**table_meta(data.name, seeds, epochs, None, command, runs),
                                           "selected_on": "validation", "val_auc_by_epoch": curves})
    plot_learning_curves(curves, os.path.join(out, f"{name}_curves.png"),
                         f"{model} variants on {data.name} (validation)")
    return rows


def check_untuned_keys(overrides: Sequence[str], where: str) -> None:
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
    data = read_json(path, required=True)
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
    check_untuned_keys(common, "--set with --tuned")
    return {m: tuned["best"][m] for m in models}
