"""A training run's record across restarts: its epochs' logs, its clock and its early stopping.

`keras.callbacks.BackupAndRestore` brings a killed run back with its weights,
its optimizer and its epoch, but not what the other callbacks knew: Keras'
`History` starts again empty, and `EarlyStopping` forgets the best validation
AUC so far, its epoch and weights, and how long it has waited. A run resumed at
epoch 6 would then keep the best of epochs 6-8 (not, say, epoch 4's), wait
`patience` epochs again, and report 3 epochs run. `RunRecord` keeps all of
that beside the backup, after every epoch, and gives it back on resume, so a
resumed run stops, keeps its weights and reports its epochs as if it had never
stopped. It keeps the model's random streams too (the states of its
`keras.random.SeedGenerator`s: dropout masks, diffusion noise), which
`BackupAndRestore` does not save; `training.train` starts the data's shuffling
at the resumed epoch (`resumed_epochs`). Together they make a resumed run
train as the uninterrupted one would, instead of replaying epoch 1's batches
and random numbers in its first epoch after the restart (tested).

`check_backup` is called before `fit`: a backup whose record is missing or
from another epoch (a run killed between the two writes, or backed up by a
version without the record), or that has no random-stream states (backed up
by a version before they were kept), cannot be resumed faithfully, and is
removed, so the run starts again from its first epoch. The record is written by each
process that trains; with a `multi_worker` strategy, where Keras'
`BackupAndRestore` does not resume either, give each worker its own `--out`.
"""

from __future__ import annotations

import os
import shutil
import time

import keras
import numpy as np

from hierdiffuse_tf.utils import read_json as _read
from hierdiffuse_tf.utils import write_json

RECORD = "run_record.json"
BEST_WEIGHTS = "best_weights.npz"
SEED_STATES = "seed_states.npz"
BACKUP_METADATA = "training_metadata.json"  # Written by `BackupAndRestore`.


def check_backup(backup_dir: str) -> str | None:
    """Removes a backup that cannot be resumed faithfully (`backup_problem`); returns why,
    or None if it is kept (or there is none)."""
    why = backup_problem(backup_dir)
    if why:
        shutil.rmtree(backup_dir)
    return why


def backup_problem(backup_dir: str) -> str | None:
    """Why the backup in `backup_dir` cannot be resumed faithfully, or None if it can (or
    there is none). Reads only.

    The backup and the record must hold the same number of epochs: a run killed
    between the two writes, one backed up by a version without the record, or a
    backup half deleted at the end of a run (`training.train` removes it once
    the run's metrics are written) cannot be resumed faithfully. Nor can one
    without the random-stream states (every epoch writes them, even for a model
    without random streams): its resumed epochs would draw epoch 1's dropout
    masks and noise again, since the streams start from their seeds.
    """
    if not os.path.isdir(backup_dir):
        return None
    record = _read(os.path.join(backup_dir, RECORD))
    epochs = resumed_epochs(backup_dir)
    recorded = int(record["epochs"]) if record else 0
    if epochs == recorded and (epochs == 0 or os.path.exists(os.path.join(backup_dir, SEED_STATES))):
        return None
    if epochs == recorded:
        why = (f"the backup in {backup_dir} holds no random-stream states (it was written before they "
               f"were kept), so resuming it would draw epoch 1's random numbers again")
    else:
        why = (f"the backup in {backup_dir} holds {epochs} epoch(s) but its run record "
               f"{'is missing' if record is None else f'holds {recorded}'}")
    return why + "; the run starts again from epoch 1"


def resumed_epochs(backup_dir: str) -> int:
    """The epochs that a backup holds (0 if there is none): where `fit` resumes, once
    `check_backup` has kept it."""
    metadata = _read(os.path.join(backup_dir, BACKUP_METADATA))
    return int(metadata["epoch"]) if metadata else 0


def _save_arrays(path: str, arrays) -> None:
    np.savez(path, *arrays)


def _load_arrays(path: str) -> list[np.ndarray]:
    """The arrays `_save_arrays` wrote, in order."""
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def seed_states(model: keras.Model) -> list:
    """The state variables of `model`'s `keras.random.SeedGenerator`s, in the model's order."""
    return [v for v in model.variables if v.path.rsplit("/", 1)[-1] == "seed_generator_state"]


def stopped_after(backup_dir: str) -> int | None:
    """The epochs of a run whose record says its early stopping had fired (a run killed
    after its last epoch, before its backup was removed): `fit` is then called with
    that many epochs, so that it runs none and only restores the best weights."""
    record = _read(os.path.join(backup_dir, RECORD))
    return int(record["epochs"]) if record and record.get("stopped") else None


class RunRecord(keras.callbacks.Callback):
    """Each epoch's logs, the training seconds and the early stopping's state, kept in
    `directory` (the `BackupAndRestore` directory) after every epoch and read back on resume.

    Args:
        directory: where the record is written; `BackupAndRestore`'s, so that a
            finished run's record goes when its backup does.
        early_stopping: an optional `keras.callbacks.EarlyStopping` that this
            callback drives (do not pass it to `fit` as well): its best value,
            epoch, weights and wait are part of the record.
        commit: the code that trains this process's epochs (`training.git_commit()`),
            recorded per epoch: a run resumed in another session names both.

    After `fit`, `history` holds every epoch's logs since the run began,
    `seconds` the time spent in its epochs and `commits` each epoch's commit,
    all across restarts.

    Example:
    >>> record = RunRecord(backup_dir, keras.callbacks.EarlyStopping("val_auc", mode="max", patience=2,
    ...                                                              restore_best_weights=True))
    >>> model.fit(train, validation_data=val, epochs=8,
    ...           callbacks=[keras.callbacks.BackupAndRestore(backup_dir), record])
    """

    def __init__(self, directory: str, early_stopping: keras.callbacks.EarlyStopping | None = None,
                 commit: str | None = None):
        super().__init__()
        self.directory = directory
        self.early_stopping = early_stopping
        self.commit = commit
        self.history: dict[str, list[float]] = {}
        self.seconds = 0.0
        self.commits: list[str | None] = []
        self._started = None

    def set_model(self, model):
        super().set_model(model)
        if self.early_stopping is not None:
            self.early_stopping.set_model(model)

    def on_train_begin(self, logs=None):
        stopping = self.early_stopping
        if stopping is not None:
            stopping.on_train_begin(logs)
        record = _read(os.path.join(self.directory, RECORD))
        if record is None:
            return
        resumed_at = getattr(self.model, "_initial_epoch", None) or 0  # Set by `BackupAndRestore`.
        if record["epochs"] != resumed_at:
            raise RuntimeError(f"The run record in {self.directory} holds {record['epochs']} epoch(s) but the "
                               f"backup resumes at epoch {resumed_at}; remove the directory to start again "
                               "(`check_backup` does so before `fit`)")
        self.history, self.seconds = record["history"], record["seconds"]
        self.commits = record.get("commits") or [None] * record["epochs"]  # None: not recorded then.
        self._restore_seed_states()
        if stopping is not None:
            stopping.best, stopping.best_epoch, stopping.wait = record["best"], record["best_epoch"], record["wait"]
            weights = os.path.join(self.directory, BEST_WEIGHTS)
            if stopping.restore_best_weights and os.path.exists(weights):
                stopping.best_weights = _load_arrays(weights)

    def _restore_seed_states(self):
        path = os.path.join(self.directory, SEED_STATES)
        states = seed_states(self.model)
        if not os.path.exists(path):
            raise RuntimeError(f"{self.directory} holds no random-stream states, so the run cannot resume "
                               "as it would have gone on; remove the directory to start again "
                               "(`check_backup` does so before `fit`)")
        values = _load_arrays(path)
        if len(values) != len(states) or any(v.shape != s.shape for v, s in zip(values, states)):
            raise RuntimeError(f"The random-stream states in {path} ({len(values)}) do not match the model's "
                               f"({len(states)}): is it the same model? Remove the directory to start again")
        for state, value in zip(states, values):
            state.assign(value)

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += time.perf_counter() - self._started
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.commits.append(self.commit)
        record = {"epochs": epoch + 1, "history": self.history, "seconds": self.seconds,
                  "commits": self.commits}
        stopping = self.early_stopping
        if stopping is not None:
            stopping.on_epoch_end(epoch, logs)
            if stopping.best_epoch == epoch and stopping.best_weights is not None:
                _save_arrays(os.path.join(self.directory, BEST_WEIGHTS), stopping.best_weights)
            best = stopping.best
            record.update(best=None if best is None else float(best), best_epoch=int(stopping.best_epoch),
                          wait=int(stopping.wait), stopped=bool(getattr(self.model, "stop_training", False)))
        os.makedirs(self.directory, exist_ok=True)
        # Before the record: a run killed between the two writes has a record of the epoch before,
        # which `check_backup` finds does not match the backup, so no state is read of another epoch.
        _save_arrays(os.path.join(self.directory, SEED_STATES), [v.numpy() for v in seed_states(self.model)])
        write_json(os.path.join(self.directory, RECORD), record)  # Whole or not at all.

    def on_train_end(self, logs=None):
        if self.early_stopping is not None:
            self.early_stopping.on_train_end(logs)
