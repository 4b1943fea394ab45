"""A killed run resumes where it stopped and trains on as the uninterrupted run would."""

import json
import os

import keras
import numpy as np
import pytest

from conftest import SMOKE, TINY_SETS
from hierdiffuse_tf import run_record, training
from hierdiffuse_tf.config import ConfigError
from hierdiffuse_tf.datasets import pipeline


class Interrupt(keras.callbacks.Callback):
    """Kills a run after its first epoch, once that epoch's backup is written."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise RuntimeError("killed")


def assert_trained_alike(resumed: dict, resumed_dir, straight: dict, straight_dir):
    """A resumed run trained as the uninterrupted one did: the same epochs, the same validation
    AUCs and the same weights (the same batches and random numbers in every epoch)."""
    np.testing.assert_allclose(resumed["history"]["val_auc"], straight["history"]["val_auc"], rtol=1e-6)
    np.testing.assert_allclose(resumed["history"]["loss"], straight["history"]["loss"], rtol=1e-5)
    weights = [training.load_run_model(str(d)).get_weights() for d in (resumed_dir, straight_dir)]
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_killed_run_resumes_from_its_backup(smoke_builder, data_dir, tmp_path, monkeypatch):
    args = dict(model_name="hierdiffuse", dataset=SMOKE, out_dir=str(tmp_path), data_dir=data_dir,
                epochs=2, seed=1, overrides=TINY_SETS + ["batch_size=512", "patience=2"], verbose=0)
    with pytest.raises(RuntimeError, match="killed"):
        training.train(**args, extra_callbacks=[Interrupt()])
    assert os.path.isdir(tmp_path / "backup")
    assert os.path.exists(tmp_path / "backup" / run_record.SEED_STATES)
    # Resumed under other settings (a default changed between sessions, say): refused, nothing touched.
    recorded = (tmp_path / "config.json").read_text()
    with pytest.raises(ConfigError, match=r"other settings than these \(learning_rate: 0.001 -> 0.01\)"):
        training.train(**{**args, "overrides": args["overrides"] + ["learning_rate=0.01"]})
    assert (tmp_path / "config.json").read_text() == recorded and os.path.isdir(tmp_path / "backup")
    metrics = training.train(**args)
    # Only the second epoch was left to run, and the run reports both, as if never stopped.
    assert metrics["epochs_run"] == 2 and len(metrics["history"]["val_auc"]) == 2
    assert metrics["best_epoch"] == int(np.argmax(metrics["history"]["val_auc"])) + 1
    assert metrics["seconds"] > 0
    assert not os.path.exists(tmp_path / "backup")  # Cleaned up after a finished run.
    assert metrics["epoch_commits"] == [training.git_commit()] * 2  # Each epoch's code, across restarts.

    # Killed after its last epoch, while it evaluates: resumed, it trains no epoch again.
    class Epochs(keras.callbacks.Callback):
        begun = 0

        def on_epoch_begin(self, epoch, logs=None):
            Epochs.begun += 1

    def killed(*args, **kwargs):
        raise RuntimeError("killed while evaluating")

    late = {**args, "out_dir": str(tmp_path / "late")}
    evaluate = training.evaluate
    monkeypatch.setattr(training, "evaluate", killed)
    with pytest.raises(RuntimeError, match="while evaluating"):
        training.train(**late)
    assert (tmp_path / "late" / "backup").is_dir() and not (tmp_path / "late" / "metrics.json").exists()
    monkeypatch.setattr(training, "evaluate", evaluate)
    resumed = training.train(**late, extra_callbacks=[Epochs()])
    assert Epochs.begun == 0 and resumed["epochs_run"] == 2 and len(resumed["history"]["val_auc"]) == 2
    assert not (tmp_path / "late" / "backup").exists()
    # That run trained both epochs in one go, and the run killed after epoch 1 trained as it did:
    # dropout, diffusion noise and batch order carried on (before 2026-12-06 its second epoch
    # replayed the first's batches and random numbers).
    assert_trained_alike(metrics, tmp_path, resumed, tmp_path / "late")


@pytest.mark.slow
def test_a_resumed_run_on_compact_arrays_trains_as_the_uninterrupted_one(smoke_builder, data_dir, tmp_path,
                                                                         monkeypatch):
    """ml-1m's case: the training split is read from compact arrays, in a permutation per epoch."""
    monkeypatch.setattr(pipeline, "CACHE_LIMIT_BYTES", 1000)
    monkeypatch.setattr(pipeline, "_HELD", {})
    assert pipeline.in_memory(smoke_builder, "train", shuffle=True)
    args = dict(model_name="din", dataset=SMOKE, data_dir=data_dir, epochs=2, seed=2, verbose=0,
                overrides=["batch_size=256", "patience=2", "dropout=0.3"])
    with pytest.raises(RuntimeError, match="killed"):
        training.train(**args, out_dir=str(tmp_path / "killed"), extra_callbacks=[Interrupt()])
    resumed = training.train(**args, out_dir=str(tmp_path / "killed"))
    straight = training.train(**args, out_dir=str(tmp_path / "straight"))
    assert_trained_alike(resumed, tmp_path / "killed", straight, tmp_path / "straight")


def test_random_states_are_kept_each_epoch_and_a_backup_without_them_is_not_resumed(tmp_path):
    """The states written at an epoch's end come back on resume; a record without them
    (backed up before they were kept) or with another model's is an error, not a resume
    that would draw epoch 1's random numbers again or mismatch them silently."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.5), keras.layers.Dense(1)])
    record = {"epochs": 1, "history": {"loss": [0.5]}, "seconds": 1.0}
    (tmp_path / run_record.RECORD).write_text(json.dumps(record))
    model._initial_epoch = 1
    resumed = run_record.RunRecord(str(tmp_path))
    resumed.set_model(model)
    with pytest.raises(RuntimeError, match="holds no random-stream states"):
        resumed.on_train_begin()
    assert resumed.history == record["history"] and resumed.commits == [None]  # No commits recorded then.
    state = run_record.seed_states(model)
    assert len(state) == 1
    state[0].assign([7, 9])
    resumed.on_epoch_begin(1)
    resumed.on_epoch_end(1, {"loss": 0.4})
    state[0].assign([0, 0])
    model._initial_epoch = 2
    resumed.on_train_begin()  # Reads the states written by the epoch that just ended.
    np.testing.assert_array_equal(state[0].numpy(), [7, 9])
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.5), keras.layers.Dropout(0.5)])
    other._initial_epoch = 2
    mismatched = run_record.RunRecord(str(tmp_path))
    mismatched.set_model(other)
    with pytest.raises(RuntimeError, match="random-stream states.*do not match"):
        mismatched.on_train_begin()


def test_a_resumed_run_keeps_its_early_stopping_state(tmp_path):
    """Killed after epoch 3 with its best at epoch 2, a run resumed at epoch 4 stops there
    (patience 2 spent) and keeps epoch 2's weights, as the uninterrupted run would."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])

    def stopping():
        return keras.callbacks.EarlyStopping("val_auc", mode="max", patience=2, restore_best_weights=True)

    def run_epochs(record, values, first=0):
        for epoch, value in enumerate(values, start=first):
            model.set_weights([np.full((1, 1), epoch, "float32"), np.zeros(1, "float32")])  # Epoch-marked.
            record.on_epoch_begin(epoch)
            record.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_auc": value})

    first = run_record.RunRecord(str(tmp_path), stopping())
    first.set_model(model)
    first.on_train_begin()
    run_epochs(first, [0.6, 0.8, 0.7])  # Killed here: no on_train_end.
    resumed = run_record.RunRecord(str(tmp_path), stopping())
    resumed.set_model(model)
    model._initial_epoch = 2  # As `BackupAndRestore` would set it from a backup of another epoch.
    with pytest.raises(RuntimeError, match="holds 3 epoch"):
        resumed.on_train_begin()
    model._initial_epoch = 3  # Its backup's epoch.
    resumed.on_train_begin()
    assert resumed.history["val_auc"] == [0.6, 0.8, 0.7] and resumed.early_stopping.best == 0.8
    model.stop_training = False
    run_epochs(resumed, [0.75], first=3)
    assert model.stop_training  # Epochs 3 and 4 without a gain over epoch 2: patience 2 spent.
    resumed.on_train_end()
    assert model.get_weights()[0][0, 0] == 1  # Epoch 2's (0-based 1) weights restored.
    assert resumed.history["val_auc"] == [0.6, 0.8, 0.7, 0.75] and resumed.seconds > 0
    assert training.best_epoch(resumed.history) == 2
    # Killed now, before its backup goes, the run would be resumed to run no more epochs.
    assert run_record.stopped_after(str(tmp_path)) == 4
    assert training.best_epoch({"val_auc": [0.6, float("nan"), 0.7]}) == 3 and training.best_epoch({}) is None


def test_a_backup_without_a_matching_record_is_started_again(tmp_path):
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    why = run_record.check_backup(str(backup))
    assert "holds 3 epoch(s) but its run record is missing" in why and not backup.exists()
    backup.mkdir()
    (backup / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    (backup / "run_record.json").write_text('{"epochs": 3, "history": {}, "seconds": 1.0}')
    # Backed up before the random-stream states were kept: resuming would replay epoch 1's.
    assert "holds no random-stream states" in run_record.check_backup(str(backup)) and not backup.exists()
    backup.mkdir()
    (backup / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    (backup / "run_record.json").write_text('{"epochs": 3, "history": {}, "seconds": 1.0}')
    np.savez(backup / run_record.SEED_STATES)  # A model without random streams writes an empty file.
    assert run_record.check_backup(str(backup)) is None and backup.exists()
    assert run_record.check_backup(str(tmp_path / "none")) is None
    # Half deleted at the end of a run: the record without the backup's metadata goes too.
    (backup / "training_metadata.json").unlink()
    assert "holds 0 epoch(s) but its run record holds 3" in run_record.check_backup(str(backup))
    assert not backup.exists()
