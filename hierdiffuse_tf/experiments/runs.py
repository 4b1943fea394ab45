"""Runs and their locks: each table's training runs, resumable and never trained twice.

Every run is a normal `training.train` run in `OUT/runs/<key>/seed<k>/`, so a
finished run is skipped when the command is run again (and a killed one
resumes from its `BackupAndRestore` checkpoint); its `config.json` and
`metrics.json` record its config, seed and git commit. Two processes may share
one `OUT`: a run is trained by whichever claims it first (`claim_run`). A
finished run whose config differs from what the code builds today is refused
(`config_drift`), never silently reused.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import time
from typing import Mapping, Sequence

from hierdiffuse_tf import training
from hierdiffuse_tf.config import ConfigError, TrainConfig, override_key
from hierdiffuse_tf.datasets import pipeline
from hierdiffuse_tf.models import MODELS, get_model_class
from hierdiffuse_tf.utils import read_json


_CLAIMED: dict[str, int] = {}  # run_dir -> the open, locked fd of its train.lock (`claim_run`).


def run_key(model: str, overrides: Sequence[str]) -> str:
    """A folder name for a model and its training overrides."""
    text = "__".join([model, *sorted(overrides)]) if overrides else model
    return re.sub(r"[^A-Za-z0-9_.=,-]", "_", text)


def run_dir_of(out: str, key: str, seed: int) -> str:
    """Where a table under `out` keeps the run of `key` (`run_key`) and `seed`."""
    return os.path.join(out, "runs", key, f"seed{seed}")


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


def train_runs(out: str, dataset: str | pipeline.PreparedDataset, jobs: Sequence[tuple[str, tuple]],
               seeds: int | Mapping[str, int],
               epochs: int | None, data_dir: str | None, common: Sequence[str] = (),
               poll_seconds: float = 30.0, eval_split: str = "test", reuse_from: str | None = None,
               wait: bool = True) -> dict | None:
    """Trains each (model, overrides) with every seed, skipping finished runs.

    `seeds` is a count for every job, or a count per model name (seeds 0 to N - 1).

    Runs held by another process (see `claim_run`) are left for last and
    waited for, so parallel experiment processes never train the same run;
    with `wait=False` they are left to that process, and the call returns
    None once it has trained all it could (a caller with more work goes on
    to it, and waits later).
    A run that `reuse_from/runs/` already trained under today's config and
    the same seed is not trained again: its model is evaluated on
    `eval_split` (`training.reevaluate`). `dataset` is resolved once here (a
    handle passes as it is) and handed down.
    """
    dataset = pipeline.open_dataset(dataset, data_dir)

    def count(model: str) -> int:
        return seeds[model] if isinstance(seeds, Mapping) else seeds

    pending = [(model, overrides, seed) for model, overrides in jobs for seed in range(count(model))]
    finished, total = {}, len(pending)

    def finish(job: tuple) -> bool:
        model, overrides, seed = job
        key = run_key(model, overrides)
        run = _Run(out, key, model, overrides_for(model, common, overrides), seed,
                   step=f"[{len(finished) + 1}/{total}]")
        made_here = _produce(run, dataset, epochs, data_dir, eval_split, reuse_from)
        if made_here is None:  # Another process holds it.
            return False
        finished[(key, seed)] = {**_finished_metrics(run, dataset, epochs, data_dir, eval_split,
                                                     made_here), "run_dir": run.run_dir}
        return True

    if not _each_in_turn(pending, finish, "finish", lambda job: f"{run_key(job[0], job[1])} seed {job[2]}",
                         poll_seconds, wait):
        return None
    results = {}
    for model, overrides in jobs:
        key = run_key(model, overrides)
        results[key] = [finished[(key, seed)] for seed in range(count(model))]
    return results


@dataclasses.dataclass(frozen=True)
class _Run:
    """One run of `train_runs`: where it lives and what trains it."""

    out: str
    key: str
    model: str
    overrides: list[str]  # The table's `--set` pairs for this model, then the row's own.
    seed: int
    step: str  # `[i/n]`, for the progress lines.

    @property
    def run_dir(self) -> str:
        return run_dir_of(self.out, self.key, self.seed)


def _produce(run: _Run, dataset: pipeline.PreparedDataset, epochs: int | None, data_dir: str | None,
             eval_split: str, reuse_from: str | None) -> bool | None:
    """Makes `run`'s `metrics.json` unless it exists: re-evaluates `reuse_from`'s run of
    the same config and seed, or trains it. True if this call made it, False if it was
    there, None if another process holds the run."""
    metrics_path = os.path.join(run.run_dir, "metrics.json")
    if os.path.exists(metrics_path):
        return False
    if not claim_run(run.run_dir):
        return None
    try:
        if os.path.exists(metrics_path):  # Another process finished it while we looked elsewhere.
            return False
        source = _reusable_run(reuse_from, run.key, run.seed, run.model, dataset, data_dir,
                               run.overrides, epochs)
        if source:
            print(f"{run.step} {run.key} seed {run.seed}: evaluating {source} on {eval_split} "
                  "(the same config and seed, so not trained again)", flush=True)
            training.reevaluate(source, run.run_dir, eval_split, data_dir, verbose=2, dataset=dataset)
        else:
            print(f"{run.step} training {run.key} seed {run.seed}", flush=True)
            training.train(run.model, dataset, run.run_dir, data_dir=data_dir, epochs=epochs,
                           seed=run.seed, overrides=run.overrides, verbose=2, eval_split=eval_split)
        return True
    finally:
        release_run(run.run_dir)


def _finished_metrics(run: _Run, dataset: pipeline.PreparedDataset, epochs: int | None,
                      data_dir: str | None, eval_split: str, made_here: bool) -> dict:
    """A finished run's metrics, once it is shown to be this row's: a run found finished
    must match the config today's code builds (`config_drift`), and any run must have
    been evaluated on `eval_split`."""
    if not made_here:
        drift = config_drift(run.run_dir, run.model, dataset, data_dir, run.overrides, epochs, run.seed)
        if drift:
            raise ConfigError(
                f"{run.run_dir} finished under another config than the one the code builds now "
                f"({'; '.join(drift)}), so its results would not be this row's. Move the "
                "folder aside to keep it (e.g. under a key naming the old value) or delete it to retrain")
        print(f"{run.step} {run.key} seed {run.seed}: done already", flush=True)
    metrics_path = os.path.join(run.run_dir, "metrics.json")
    metrics = read_json(metrics_path, required=True)
    if metrics.get("split", "test") != eval_split:  # E.g. a tuning run in a table's folder.
        raise ConfigError(f"{metrics_path} was evaluated on {metrics.get('split')!r}, not "
                          f"{eval_split!r}: keep tuning runs (`experiment tune`) and table runs apart")
    return metrics


def best_epochs(run_metrics: list) -> str:
    """Each run's best validation epoch over the epochs it ran, per seed (say `5/7, 6/8`).

    With early stopping (`patience` > 0) the best epoch's weights are the ones kept,
    and a best epoch before the last shows that the epoch budget let the model
    converge; with `patience=0` the last epoch's weights are kept whatever this says.
    """
    return ", ".join(f"{m.get('best_epoch') or '?'}/{m.get('epochs_run') or '?'}" for m in run_metrics)


def _reusable_run(reuse_from: str | None, key: str, seed: int, model: str,
                  dataset: str | pipeline.PreparedDataset,
                  data_dir: str | None, overrides: Sequence[str], epochs: int | None) -> str | None:
    """`reuse_from`'s finished run of `key` and `seed`, if today's code would train it alike."""
    if not reuse_from:
        return None
    dataset = pipeline.open_dataset(dataset, data_dir, auto_prepare=False)
    run_dir = run_dir_of(reuse_from, key, seed)
    if not all(os.path.exists(os.path.join(run_dir, name))
               for name in ("config.json", "model.keras", "metrics.json")):
        return None
    if read_json(os.path.join(run_dir, "config.json"), required=True).get("dataset") != dataset.name:
        return None
    return None if config_drift(run_dir, model, dataset, data_dir, overrides, epochs, seed) else run_dir


def config_drift(run_dir: str, model: str, dataset: str | pipeline.PreparedDataset, data_dir: str | None,
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
    data = pipeline.open_dataset(dataset, data_dir, auto_prepare=False)
    _, model_config, train_config = training.resolve_configs(model, data, None, overrides, epochs, seed)
    return training.config_changes(read_json(path, required=True), model_config, train_config)


def restore_models(run_dirs: Sequence[str], data_dir: str | None = None, poll_seconds: float = 30.0) -> None:
    """Gives each finished run in `run_dirs` its `model.keras` back, training it again where
    git kept none (`training.restore_model`, which checks that the retrained run reproduces
    the recorded metrics). A run that another process holds is waited for."""
    def restore(run_dir: str) -> bool:
        if not claim_run(run_dir):
            return False
        try:
            if not os.path.exists(os.path.join(run_dir, "model.keras")):
                print(f"restoring {run_dir}/model.keras: training the run again from its config.json "
                      "(git keeps no models); its metrics must match the recorded ones", flush=True)
                training.restore_model(run_dir, data_dir, verbose=2)
        finally:
            release_run(run_dir)
        return True

    pending = [d for d in dict.fromkeys(run_dirs) if not os.path.exists(os.path.join(d, "model.keras"))]
    _each_in_turn(pending, restore, "restore", str, poll_seconds)


def _each_in_turn(pending: list, attempt, what: str, name, poll_seconds: float, wait: bool = True) -> bool:
    """Calls `attempt(item)` on each item until every one has returned True. An item that
    another process holds (`attempt` returned False) is tried again after the others; once
    only such items are left, they are waited for, polling every `poll_seconds`, or, with
    `wait=False`, False is returned at once. `what` and `name(item)` word the waiting line."""
    while pending:
        waiting = [item for item in pending if not attempt(item)]
        if waiting and len(waiting) == len(pending):
            if not wait:
                return False
            print(f"waiting for another process to {what}: {', '.join(name(item) for item in waiting)}",
                  flush=True)
            time.sleep(poll_seconds)
        pending = waiting
    return True
