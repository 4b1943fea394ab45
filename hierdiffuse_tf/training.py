"""Training and evaluation runs: what `hierdiffuse train` and `evaluate` do.

`train` sizes the model from the dataset's metadata, fits it with Keras'
progress bar and callbacks (`BackupAndRestore`, so a killed run resumes;
`TensorBoard`; `TerminateOnNaN`), evaluates the test split (tuning runs:
validation), and writes
`metrics.json`, `model.keras` and `config.json` into the run directory.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import subprocess
import time
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from hierdiffuse_tf import config as config_lib
from hierdiffuse_tf import distribute, run_record
from hierdiffuse_tf.datasets import pipeline
from hierdiffuse_tf.errors import HierDiffuseError
from hierdiffuse_tf.models import CTRModel, get_model_class
from hierdiffuse_tf.utils import read_json, write_json


def git_commit() -> str | None:
    """HEAD's hash, with `-dirty` when the package's code differs from it (results
    made by uncommitted code say so); None outside a git checkout."""
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=5).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                  "hierdiffuse_tf"], cwd=root, capture_output=True, text=True,
                                 timeout=5).stdout.strip()
        return (head + "-dirty" if changed else head) or None
    except (OSError, subprocess.SubprocessError):
        return None


# Metrics.

def group_auc(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> float:
    """GAUC: per-user AUC weighted by impressions, over users with both labels."""
    order = np.argsort(users, kind="stable")
    users, labels, scores = users[order], labels[order], scores[order]
    bounds = np.flatnonzero(np.diff(users)) + 1
    total, weight = 0.0, 0
    for lab, sco in zip(np.split(labels, bounds), np.split(scores, bounds)):
        positives = int(lab.sum())
        if positives == 0 or positives == len(lab):
            continue
        ranks = _average_ranks(sco)
        auc = (ranks[lab == 1].sum() - positives * (positives + 1) / 2) / (
            positives * (len(lab) - positives))
        total += auc * len(lab)
        weight += len(lab)
    return float(total / weight) if weight else float("nan")


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_x)) + 1, [len(x)]])
    for a, b in zip(starts[:-1], starts[1:]):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return ranks


def ctr_metrics(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> dict:
    """AUC (`keras.metrics.AUC`), log loss and GAUC of CTR scores."""
    auc = keras.metrics.AUC(num_thresholds=10_000)
    auc.update_state(labels, scores)
    clipped = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
    logloss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
    return {"auc": float(auc.result()), "logloss": float(logloss),
            "gauc": group_auc(labels, scores, users), "examples": int(len(labels))}


def ctr_scores(model: CTRModel, features: dict):
    """The model's click probabilities `(B,)` at inference."""
    return model(features, training=False)["ctr"]


XLA_SCORING_ENV = "HIERDIFFUSE_XLA_SCORING"
XLA_TRAINING_ENV = "HIERDIFFUSE_XLA_TRAINING"


def xla_allowed(env: str) -> bool:
    """False where the switch `env` (`XLA_SCORING_ENV`, `XLA_TRAINING_ENV`) is "0"."""
    return os.environ.get(env, "1") != "0"


def xla_scoring(model: CTRModel | type[CTRModel]) -> bool:
    """Whether `compiled_scorer` compiles with XLA: where the model scores faster so
    (`jit_predict`), unless `HIERDIFFUSE_XLA_SCORING=0` asks for the plain graph (scores
    within 1e-5 of XLA's; the test suite sets it, since an XLA compile of a small model's
    scorer costs seconds at each evaluation and the XLA paths have tests of their own)."""
    return model.jit_predict and xla_allowed(XLA_SCORING_ENV)


def compiled_scorer(model: CTRModel, **kwargs):
    """`ctr_scores` of `model` as one `tf.function`, under XLA where `xla_scoring` says so;
    no autograph, which Keras layers do not need (Keras traces its own predict function
    the same way)."""
    kwargs.setdefault("jit_compile", xla_scoring(model))
    return tf.function(functools.partial(ctr_scores, model), autograph=False, **kwargs)


def predict_split(model: CTRModel, dataset: tf.data.Dataset, verbose: int = 1):
    """`(labels, scores, users)` over a `(features, label)` dataset, with a progress bar."""
    predict = compiled_scorer(model)
    labels, scores, users = [], [], []
    batches = int(dataset.cardinality())
    progress = keras.utils.Progbar(batches if batches > 0 else None, verbose=verbose,
                                   unit_name="batch")
    for i, (features, label) in enumerate(dataset):
        scores.append(predict(features).numpy())
        labels.append(label.numpy())
        users.append(features["user_id"].numpy())
        progress.update(i + 1)
    if not labels:
        raise pipeline.DatasetError("The split is empty: nothing to evaluate.")
    return np.concatenate(labels), np.concatenate(scores), np.concatenate(users)


def evaluate(model: CTRModel, dataset: tf.data.Dataset, verbose: int = 1) -> dict:
    """`ctr_metrics` (AUC, log loss, GAUC, examples) of `model` on `dataset`, the seconds
    it took, and whether it scored under XLA."""
    start = time.perf_counter()
    result = ctr_metrics(*predict_split(model, dataset, verbose))
    result["eval_seconds"] = time.perf_counter() - start
    result["xla_scoring"] = xla_scoring(model)  # Scores within 1e-5 of the plain graph's.
    return result


# Runs.

def check_sequence_shape(model_values: dict, data: pipeline.PreparedDataset, vocabulary: bool = False) -> None:
    """The model's M, K, N must be the dataset's, and with `vocabulary` its item and category
    counts too (a trained model read ids of its own data only); the error names the field."""
    expected = data.model_values() if vocabulary else pipeline.sequence_shape(data.builder)
    for key, value in expected.items():
        if model_values[key] != value:
            raise config_lib.ConfigError(
                f"`{key}={model_values[key]}` does not match the dataset, which has {key}={value}")


def resolve_configs(model_name: str, data: pipeline.PreparedDataset, config_file: str | None = None,
                    overrides: Sequence[str] = (), epochs: int | None = None,
                    seed: int | None = None):
    """The model and train configs of a run: dataset sizes, then file, then `--set`."""
    model_cls = get_model_class(model_name)
    values = config_lib.load_config_file(config_file) if config_file else {"model": {}, "train": {}}
    model_values = {**data.model_values(), **values["model"]}
    train_values = dict(values["train"])
    if epochs is not None:
        train_values["epochs"] = epochs
    if seed is not None:
        train_values["seed"] = seed
    config_lib.apply_overrides(model_values, train_values, model_cls.config_cls, overrides)
    train_config = config_lib.TrainConfig.from_dict(train_values)
    check_sequence_shape(model_values, data)
    given = values["model"].keys() | {config_lib.override_key(o) for o in overrides}
    if "schedule_steps" in model_cls.config_cls.field_names() and "schedule_steps" not in given:
        # The lambda and dt-span schedules cover the whole run unless the user set their length.
        model_values["schedule_steps"] = max(1, steps_per_epoch(data, train_config) * train_config.epochs)
    return model_cls, model_cls.config_cls.from_dict(model_values), train_config


def steps_per_epoch(data: pipeline.PreparedDataset, train_config: config_lib.TrainConfig) -> int:
    """The training steps of one epoch: full batches only with `drop_remainder`, else one more
    for the short last batch."""
    batches = data.num_examples("train") / train_config.batch_size
    return math.floor(batches) if train_config.drop_remainder else math.ceil(batches)


def xla_training(model_cls: type[CTRModel], strategy: str = "none") -> bool:
    """Whether `fit` compiles `model_cls`'s step with XLA: where it measured faster
    (`jit_train`), on one device, unless `HIERDIFFUSE_XLA_TRAINING=0` asks for the plain
    graph everywhere (for op-level debugging or profiles; the test suite sets it, since
    an XLA compile costs seconds per small model and the XLA paths have tests of their own)."""
    return model_cls.jit_train and strategy == "none" and xla_allowed(XLA_TRAINING_ENV)


def compile_model(model: CTRModel, train_config: config_lib.TrainConfig) -> CTRModel:
    optimizer = keras.optimizers.Adam(train_config.learning_rate,
                                      clipnorm=train_config.clipnorm or None)
    model(model.example_inputs(), training=False)  # Build the weights (BackupAndRestore needs them).
    model.compile(optimizer=optimizer, jit_compile=xla_training(type(model), train_config.strategy))
    return model


def train(model_name: str, dataset: str | pipeline.PreparedDataset, out_dir: str, data_dir: str | None = None,
          epochs: int | None = None, seed: int | None = None, config_file: str | None = None,
          overrides: Sequence[str] = (), verbose: int = 1,
          extra_callbacks: Sequence[keras.callbacks.Callback] = (), eval_split: str = "test") -> dict:
    """Trains, evaluates on `eval_split`, and writes the run directory. Returns the metrics.

    `dataset` is a name or a `PreparedDataset` handle (then `data_dir` is not
    read). Tuning runs pass `eval_split="validation"`, so the test split is never read.
    """
    data = pipeline.open_dataset(dataset, data_dir)
    model_cls, model_config, train_config = resolve_configs(
        model_name, data, config_file, overrides, epochs, seed)
    os.makedirs(out_dir, exist_ok=True)
    backup = os.path.join(out_dir, "backup")
    restarted = run_record.check_backup(backup)  # A backup that cannot be resumed faithfully goes.
    if restarted:
        print(f"Note: {restarted}", flush=True)
    resumed = run_record.resumed_epochs(backup)  # The epochs a kept backup holds; 0 without one.
    if resumed:  # Before config.json is written over: it is the backup's.
        _check_resume(out_dir, backup, model_name, data.name, model_config, train_config)
    keras.utils.set_random_seed(train_config.seed)
    commit = git_commit()
    run = {"model": model_name, "dataset": data.name, "model_config": model_config.to_dict(),
           "train_config": train_config.to_dict(), "git_commit": commit}
    write_json(os.path.join(out_dir, "config.json"), run, indent=2)

    strategy = distribute.make_strategy(train_config.strategy)
    with strategy.scope():  # Keras keeps the strategy for fit, evaluate and predict.
        model = compile_model(model_cls(model_config), train_config)

    record, callbacks = _run_callbacks(out_dir, backup, train_config.patience, extra_callbacks, commit)

    def make(split: str, shuffle: bool, cache: bool = False, drop_remainder: bool = False):
        # A resumed run's shuffling starts where the uninterrupted run's would be.
        return data.batches(split, train_config.batch_size, shuffle=shuffle, seed=train_config.seed,
                            shuffle_buffer=train_config.shuffle_buffer, cache=cache, start_epoch=resumed,
                            drop_remainder=drop_remainder)

    # Both are read every epoch: kept in memory after the first, where that changes nothing read.
    # A run killed after its early stopping fired runs no more epochs; it only restores the best weights.
    epochs = run_record.stopped_after(backup) or train_config.epochs
    model.fit(make("train", True, cache=True, drop_remainder=train_config.drop_remainder),
              validation_data=make("validation", False, cache=True),
              epochs=epochs, callbacks=callbacks, verbose=verbose,
              shuffle=False)  # The tf.data pipeline shuffles.
    model.save(os.path.join(out_dir, "model.keras"))
    metrics = evaluate(model, make(eval_split, False), verbose=verbose)
    history = record.history  # Every epoch of the run, across restarts.
    metrics.update({"seconds": record.seconds, "seed": train_config.seed, "model": model_name,
                    "dataset": data.name, "split": eval_split, "epochs_run": len(history.get("loss", [])),
                    "xla_training": bool(model.jit_compile),  # Under XLA the random streams differ.
                    "best_epoch": best_epoch(history), "history": history,
                    "epoch_commits": record.commits})  # config.json's `git_commit` is the last process's.
    write_json(os.path.join(out_dir, "metrics.json"), metrics, indent=2)
    shutil.rmtree(backup, ignore_errors=True)  # The run is finished: nothing left to resume.
    return metrics


# Settings that a resumed run may change: how many epochs it runs in all.
RESUMABLE_CHANGES = ("epochs",)


def config_changes(recorded: dict, model_config, train_config, ignore: Sequence[str] = ()) -> list[str]:
    """`field: recorded -> now` for each field of the configs where a run's `config.json`
    (`recorded`) differs from `model_config` and `train_config`, but those in `ignore`.

    A field the run did not record is compared through its config class's
    `LEGACY_DEFAULTS` value, or not at all if it has none; a field it recorded
    that no longer exists is not compared.
    """
    changes = []
    for part, config in (("model_config", model_config), ("train_config", train_config)):
        now = json.loads(json.dumps(config.to_dict()))  # Tuples as the JSON lists that were recorded.
        then = {**config.LEGACY_DEFAULTS, **recorded.get(part, {})}
        changes += [f"{k}: {then[k]!r} -> {now[k]!r}" for k in sorted(then.keys() & now.keys())
                    if k not in ignore and then[k] != now[k]]
    return changes


def _check_resume(out_dir: str, backup: str, model_name: str, dataset: str, model_config,
                  train_config) -> None:
    """Refuses to resume a backup under other settings than it was trained with (say, a
    default changed between two sessions): its weights and optimizer would go on under the
    new ones, and `config.json` would claim them for the whole run."""
    recorded = read_json(os.path.join(out_dir, "config.json"))
    if recorded is None:
        return  # Nothing to compare: the record of the settings was lost, not the settings.
    changes = [f"{k}: {recorded.get(k)!r} -> {v!r}" for k, v in (("model", model_name), ("dataset", dataset))
               if recorded.get(k) != v]
    changes += config_changes(recorded, model_config, train_config, ignore=RESUMABLE_CHANGES)
    if changes:
        raise config_lib.ConfigError(
            f"{backup} holds a run trained with other settings than these ({'; '.join(changes)}): "
            f"resume it with its own settings (its config.json), or remove {backup} to start again")


def _run_callbacks(out_dir: str, backup: str, patience: int, extra: Sequence[keras.callbacks.Callback],
                   commit: str | None = None) -> tuple[run_record.RunRecord, list]:
    """The run's `RunRecord` and `fit`'s callbacks: the resumable backup, the record, TensorBoard
    logs, a stop on NaN, then `extra`."""
    # Early stopping on validation AUC, keeping the best epoch's weights; `RunRecord` drives it, so
    # that a resumed run keeps its best so far, its wait and the logs of every epoch.
    stopping = (keras.callbacks.EarlyStopping("val_auc", mode="max", patience=patience,
                                              restore_best_weights=True) if patience else None)
    record = run_record.RunRecord(backup, stopping, commit)
    return record, [
        # Before the record: both write after each epoch. The backup outlives `fit` and goes only
        # once metrics.json is written, so a run killed while it saves or evaluates its model
        # resumes at its last epoch (no epoch to run; the best weights restored) instead of epoch 1.
        keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False),
        record,
        keras.callbacks.TensorBoard(os.path.join(out_dir, "logs")),
        keras.callbacks.TerminateOnNaN(),
        *extra,
    ]


def best_epoch(history: dict) -> int | None:
    """The 1-based epoch of this run's best validation AUC, or None. Its weights are the
    ones kept when `patience` > 0; with patience 0 the last epoch's are kept."""
    values = np.asarray(history.get("val_auc") or [], dtype=float)
    return int(np.nanargmax(values)) + 1 if np.isfinite(values).any() else None


def load_run_model(model_dir: str) -> CTRModel:
    """The model a run saved (`model_dir/model.keras`); a missing one is an error that says
    how to make it."""
    path = os.path.join(model_dir, "model.keras")
    if not os.path.exists(path):
        hint = ""
        if os.path.exists(os.path.join(model_dir, "config.json")):  # A run whose model git does not keep.
            hint = (f" (trained models are not in git: train the run again from its config.json with "
                    f"`hierdiffuse restore --model-dir {model_dir}`, which checks that it reproduces the "
                    f"recorded metrics)")
        raise FileNotFoundError(f"No model.keras in {model_dir!r}; train with --out {model_dir}{hint}")
    return keras.saving.load_model(path)


def evaluate_run(model_dir: str, dataset: str | pipeline.PreparedDataset, split: str = "test", data_dir: str | None = None,
                 batch_size: int = 1024, verbose: int = 1) -> dict:
    """Evaluates a saved run's model on a split of a prepared dataset."""
    model = load_run_model(model_dir)
    data = pipeline.open_dataset(dataset, data_dir, auto_prepare=False)
    check_sequence_shape(model.config.to_dict(), data, vocabulary=True)
    metrics = evaluate(model, data.batches(split, batch_size), verbose=verbose)
    metrics.update({"dataset": data.name, "split": split, "model_dir": model_dir})
    return metrics


def reevaluate(source_dir: str, out_dir: str, split: str, data_dir: str | None = None,
               verbose: int = 1, dataset: str | pipeline.PreparedDataset | None = None) -> dict:
    """A finished run's model evaluated on another split, written as a run of its own.

    For a run that training would repeat bit for bit (same config, seed and
    data): `experiment tune` takes a table's seed-0 run of the defaults this
    way instead of training it again. `out_dir` gets the source's
    `config.json` and `model.keras`, and a `metrics.json` whose training
    record (`seconds`, `history`, `seed`, `epoch_commits`) is the source's, whose metrics are
    `split`'s, and whose `evaluated_from` names the source.
    """
    source = {name: os.path.join(source_dir, name) for name in ("config.json", "model.keras", "metrics.json")}
    missing = [name for name, path in source.items() if not os.path.exists(path)]
    if missing:
        raise FileNotFoundError(f"{source_dir!r} is not a finished run: it has no {', '.join(missing)}")
    trained = read_json(source["metrics.json"], required=True)
    batch_size = read_json(source["config.json"], required=True)["train_config"]["batch_size"]  # As `train` would.
    os.makedirs(out_dir, exist_ok=True)
    for name in ("config.json", "model.keras"):
        shutil.copy2(source[name], os.path.join(out_dir, name))
    metrics = evaluate_run(out_dir, dataset or trained["dataset"], split, data_dir, batch_size, verbose)
    del metrics["model_dir"]
    kept = ("seconds", "seed", "model", "epochs_run", "best_epoch", "xla_training", "history",
            "epoch_commits")
    metrics.update({key: trained[key] for key in kept if key in trained}, evaluated_from=source_dir)
    write_json(os.path.join(out_dir, "metrics.json"), metrics, indent=2)
    return metrics


class RestoreError(HierDiffuseError):
    """A run trained again did not reproduce its recorded metrics, so its model is not restored."""


# How far a retrained run's AUC and log loss may be from the recorded ones: training is
# deterministic on one machine type, so a faithful retraining matches to float32 round-off.
RESTORE_TOLERANCE = 1e-6


def restore_model(run_dir: str, data_dir: str | None = None, verbose: int = 1) -> dict:
    """Trains a finished run again to recover the `model.keras` that git does not keep.

    The run is trained from its own `config.json` (model, dataset, seed, and
    its configs read as a saved config: legacy values for fields it predates,
    retired fields dropped) in `run_dir/restoring/` (resumable there), and
    evaluated on the split its `metrics.json` records. Only if that reproduces
    the recorded AUC, log loss and validation curve (`RESTORE_TOLERANCE`) does
    the model move to `run_dir/model.keras`, with `restored.json` beside it; any
    other result raises `RestoreError` and leaves the retrained run in
    `restoring/`, where a second call compares it again without training.
    Returns the retrained metrics. Callers that share a run with other
    processes hold its lock (`experiments.restore_models`).
    """
    recorded = read_json(os.path.join(run_dir, "config.json"), required=True)
    trained = read_json(os.path.join(run_dir, "metrics.json"), required=True)
    model_cls = get_model_class(recorded["model"])
    model_config = model_cls.config_cls.from_saved(recorded["model_config"])
    train_config = config_lib.TrainConfig.from_saved(recorded["train_config"])
    compiles = (("xla_training", xla_training(model_cls, train_config.strategy), XLA_TRAINING_ENV,
                 "the random streams differ"),
                ("xla_scoring", xla_scoring(model_cls), XLA_SCORING_ENV,
                 "the scores agree to 1e-5, and the AUC is compared to 1e-6"))
    for field, here, env, why in compiles:  # A field the run predates is not checked.
        if trained.get(field, here) != here:
            raise RestoreError(f"{run_dir} ran with {field}={trained[field]}, and this process would use "
                               f"{here} ({why}): set {env} to match")
    data = pipeline.open_dataset(recorded["dataset"], data_dir)
    sizes = model_config.to_dict()
    other = [f"{k}: {sizes.get(k)} recorded, {v} here" for k, v in data.model_values().items() if sizes.get(k) != v]
    if other:
        raise RestoreError(f"{run_dir} was trained on a {recorded['dataset']} with other sizes than the one "
                           f"prepared here ({', '.join(other)}): not the data it was trained on")
    scratch = os.path.join(run_dir, "restoring")
    again = read_json(os.path.join(scratch, "metrics.json"))  # A retraining that did not match before.
    if again is None or not os.path.exists(os.path.join(scratch, "model.keras")):
        os.makedirs(scratch, exist_ok=True)
        configs = os.path.join(scratch, "recorded_configs.json")
        write_json(configs, {"model": model_config.to_dict(), "train": train_config.to_dict()}, indent=2)
        again = train(recorded["model"], data, scratch, config_file=configs, verbose=verbose,
                      eval_split=trained["split"])
    curves = [again["history"].get("val_auc", []), trained["history"].get("val_auc", [])]
    gaps = {key: abs(again[key] - trained[key]) for key in ("auc", "logloss")}
    gaps["val_auc"] = (max((abs(a - b) for a, b in zip(*curves)), default=0.0)
                       if len(curves[0]) == len(curves[1]) else float("inf"))  # Other epochs: another run.
    if not all(gap <= RESTORE_TOLERANCE for gap in gaps.values()):  # A NaN gap fails too.
        raise RestoreError(
            f"Trained again from {os.path.join(run_dir, 'config.json')}, the run reached {trained['split']} "
            f"AUC {again['auc']:.6f} (recorded: {trained['auc']:.6f}), log loss {again['logloss']:.6f} "
            f"(recorded: {trained['logloss']:.6f}), largest validation-AUC gap {gaps['val_auc']:.2e}: "
            f"not the recorded model (another CPU type, code that trains differently, or other data), "
            f"so {run_dir}/model.keras was not restored; the retrained run is in {scratch}")
    os.replace(os.path.join(scratch, "model.keras"), os.path.join(run_dir, "model.keras"))
    write_json(os.path.join(run_dir, "restored.json"),
               {"git_commit": git_commit(), "split": trained["split"], "auc": again["auc"],
                "recorded_auc": trained["auc"], "largest_gaps": gaps, "seconds": again["seconds"]}, indent=2)
    shutil.rmtree(scratch, ignore_errors=True)
    return again
