"""The table commands: resumable runs, per-row seeds and configs, timing, and honest switches."""

import functools
import json
import os
import re
import subprocess
import sys
import time
import types

import keras
import numpy as np
import pytest

from conftest import SMOKE, TINY_SETS, random_features, tiny_sets
from hierdiffuse_tf import cli, experiments, run_record, training
from hierdiffuse_tf.datasets import pipeline
from hierdiffuse_tf.config import ConfigError, HierDiffuseConfig
from hierdiffuse_tf.models import HierDiffuse

FAST = TINY_SETS + ["batch_size=512"]
# A dataset handle for runs that a test fakes: nothing reads its (absent) builder.
ANY = pipeline.PreparedDataset("any", None)


def patch_sleep(monkeypatch, on_wait) -> None:
    """`on_wait` for the experiment loop's `time.sleep` only: patching `time.sleep`
    itself would also catch subprocess's polling (git_commit) and library threads."""
    own_time = types.SimpleNamespace(**{name: getattr(time, name) for name in dir(time)
                                        if not name.startswith("__")})
    own_time.sleep = on_wait
    monkeypatch.setattr(experiments.runs, "time", own_time)


@pytest.mark.slow
def test_table1_writes_rows_with_seeds_and_resumes(smoke_builder, data_dir, tmp_path, capsys):
    argv = ["experiment", "table1", "--dataset", SMOKE, "--data-dir", data_dir, "--seeds", "2",
            "--epochs", "1", "--out", str(tmp_path), "--models", "avg_pool_dnn,din",
            "--batch-size", "128", "--timing-batches", "3", *sum((["--set", s] for s in FAST), [])]
    assert cli.main(argv) == 0
    table = json.load(open(tmp_path / "table1.json"))
    rows = {r["model"]: r for r in table["rows"]}
    assert set(rows) == {"avg_pool_dnn", "din"}
    for row in rows.values():
        assert len(row["aucs"]) == 2 and row["seeds"] == [0, 1]
        assert row["auc_std"] == pytest.approx(np.std(row["aucs"]))
        assert row["batches_per_sec"] > 0 and row["config"]["model_config"]["embed_dim"] == 16
        assert row["best_epochs"] == "1/1, 1/1"  # Each seed's early-stopping choice, of the epochs it ran.
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", table["meta"]["git_commit"])  # Tests run in a checkout.
    assert (tmp_path / "table1.md").read_text().startswith("| model |")
    assert (tmp_path / "table1.csv").exists()
    assert all(len(r["val_auc_by_epoch"]) == 1 for r in rows.values())
    assert (tmp_path / "table1_curves.png").stat().st_size > 1000
    capsys.readouterr()
    mtime = os.path.getmtime(tmp_path / "runs" / "din" / "seed1" / "metrics.json")
    assert cli.main(argv) == 0  # A second run trains nothing.
    assert "done already" in capsys.readouterr().out
    assert os.path.getmtime(tmp_path / "runs" / "din" / "seed1" / "metrics.json") == mtime
    # `--name` writes a second table from the same runs and leaves the first alone.
    first = (tmp_path / "table1.json").read_text()
    assert cli.main([*argv, "--name", "table1_defaults"]) == 0
    assert "done already" in capsys.readouterr().out
    assert (tmp_path / "table1.json").read_text() == first
    named = json.load(open(tmp_path / "table1_defaults.json"))
    assert [r["aucs"] for r in named["rows"]] == [r["aucs"] for r in table["rows"]]
    assert "--name table1_defaults" in (tmp_path / "table1_defaults.md").read_text()
    assert (tmp_path / "table1_defaults_curves.png").stat().st_size > 1000
    assert {r["speed_source"] for r in table["rows"]} == {"re-timed"}
    # Git keeps no models: a checkout without DIN's times DIN's architecture with fresh weights,
    # beside the rest, in the same process.
    os.remove(tmp_path / "runs" / "din" / "seed0" / "model.keras")
    assert cli.main([*argv, "--name", "table1_no_model"]) == 0
    rows = {r["model"]: r for r in json.load(open(tmp_path / "table1_no_model.json"))["rows"]}
    assert rows["din"]["speed_source"] == "re-timed, fresh weights"
    assert rows["avg_pool_dnn"]["speed_source"] == "re-timed"
    assert rows["din"]["batches_per_sec"] > 0
    assert [r["aucs"] for r in rows.values()] == [r["aucs"] for r in table["rows"]]
    # One model with fewer seeds than the rest: its row has them, and the caption says so.
    assert cli.main([*argv, "--seeds-for", "din=1", "--name", "table1_fewer"]) == 0
    rows = {r["model"]: r for r in json.load(open(tmp_path / "table1_fewer.json"))["rows"]}
    assert rows["din"]["seeds"] == [0] and rows["din"]["aucs"] == {r["model"]: r for r in table["rows"]}["din"]["aucs"][:1]
    assert rows["avg_pool_dnn"]["seeds"] == [0, 1]
    assert "2 seed(s) (din: 1)" in (tmp_path / "table1_fewer.md").read_text()
    # A finished run whose recorded config is not what the code builds now is never reused.
    config_path = tmp_path / "runs" / "din" / "seed1" / "config.json"
    recorded = json.load(open(config_path))
    recorded["model_config"]["dropout"] = 0.3
    config_path.write_text(json.dumps(recorded))
    with pytest.raises(ConfigError, match=r"dropout: 0.3 -> 0.1.*Move the folder aside"):
        experiments.train_runs(str(tmp_path), SMOKE, [("din", ())], 2, 1, data_dir, FAST)


@pytest.mark.slow
def test_table2_reuses_the_full_model_for_sampler_rows(smoke_builder, data_dir, tmp_path, monkeypatch):
    # Six tables, each timing its rows: one timed pass over one batch is enough to check that.
    monkeypatch.setattr(experiments.tables, "time_inference",
                        functools.partial(experiments.tables.time_inference, repeats=1))
    rows_spec = [r for r in experiments.TABLE2_ROWS
                 if r.variant in ("w/ CFG", "w/ SGD (ours)", "w/ DDIM", "TCC (ours)")]
    rows = experiments.table2(SMOKE, str(tmp_path), seeds=1, epochs=1, data_dir=data_dir,
                              rows_spec=rows_spec, batch_size=128, timing_batches_count=1,
                              common=FAST + ["sampler_steps=2"])
    by = {r["variant"]: r for r in rows}
    assert by["w/ SGD (ours)"]["delta"] == 0.0 and by["TCC (ours)"]["delta"] == 0.0
    assert by["w/ DDIM"]["inference_changes"] == {"sampler": "ddim"}
    assert sorted(os.listdir(tmp_path / "runs")) == ["hierdiffuse", "hierdiffuse__guidance=cfg"]
    assert all(r["batches_per_sec"] > 0 for r in rows)
    assert "| 2(a) | w/ CFG |" in (tmp_path / "table2.md").read_text()
    curves = json.load(open(tmp_path / "table2.json"))["meta"]["val_auc_by_epoch"]
    assert sorted(curves) == ["full model", "w/ CFG"]
    assert (tmp_path / "table2_curves.png").stat().st_size > 1000
    # The calls below train no new variant: the full model's row and a sampler row are enough,
    # and each row they drop is a model less to load, evaluate and time per call. Timing was
    # checked above; below, each row's model is still loaded or built, and run once.
    rows_spec = [r for r in rows_spec if r.variant in ("TCC (ours)", "w/ DDIM")]
    monkeypatch.setattr(experiments.tables, "time_inference",
                        lambda models, batches, **kwargs: {name: 1.0 for name in models})
    # Each sampler row's metrics are kept beside the run's, where git keeps them; a checkout
    # without the full model's model.keras (git keeps no models) still has the row's AUC,
    # and times the row on fresh weights.
    run_dir = tmp_path / "runs" / "hierdiffuse" / "seed0"
    kept = json.load(open(run_dir / "metrics_sampler=ddim.json"))
    assert kept["auc"] == by["w/ DDIM"]["auc_mean"] and kept["inference_changes"] == {"sampler": "ddim"}
    os.rename(run_dir / "model.keras", tmp_path / "model.keras")
    again = {r["variant"]: r for r in experiments.table2(
        SMOKE, str(tmp_path), seeds=1, epochs=1, data_dir=data_dir, rows_spec=rows_spec,
        batch_size=128, timing_batches_count=1, common=FAST + ["sampler_steps=2"])}
    assert again["w/ DDIM"]["auc_mean"] == by["w/ DDIM"]["auc_mean"]
    assert {r["speed_source"] for r in again.values()} == {"re-timed, fresh weights"}
    assert all(r["batches_per_sec"] > 0 for r in again.values())
    # Kept metrics of an earlier training of the run (another test AUC) are not its model's; with
    # neither those nor a model, the run is trained again from its config.json, and its model is
    # restored only if the retrained run reproduces the recorded metrics.
    finished = json.load(open(run_dir / "metrics.json"))
    (run_dir / "metrics.json").write_text(json.dumps({**finished, "auc": finished["auc"] + 0.01}))
    with pytest.raises(training.RestoreError, match=r"not the recorded model.*runs/hierdiffuse/seed0/restoring"):
        experiments.table2(SMOKE, str(tmp_path), seeds=1, epochs=1, data_dir=data_dir,
                           rows_spec=rows_spec, common=FAST + ["sampler_steps=2"])
    assert not (run_dir / "model.keras").exists()
    (run_dir / "metrics.json").write_text(json.dumps(finished))
    os.remove(run_dir / "metrics_sampler=ddim.json")
    restored = {r["variant"]: r for r in experiments.table2(
        SMOKE, str(tmp_path), seeds=1, epochs=1, data_dir=data_dir, rows_spec=rows_spec,
        batch_size=128, timing_batches_count=1, common=FAST + ["sampler_steps=2"])}
    assert restored["w/ DDIM"]["auc_mean"] == by["w/ DDIM"]["auc_mean"]
    assert json.load(open(run_dir / "restored.json"))["auc"] == finished["auc"]
    assert not (run_dir / "restoring").exists()
    restored_weights = training.load_run_model(str(run_dir)).get_weights()
    original_weights = keras.saving.load_model(str(tmp_path / "model.keras")).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(restored_weights, original_weights))
    assert cli.main(["restore", "--data-dir", data_dir, "--model-dir", str(run_dir)]) == 0  # Nothing to do.
    # Refused before training: data of other sizes than the run's, or another compile of the step
    # or of the scorer.
    other = tmp_path / "other_run"
    other.mkdir()
    recorded = json.load(open(run_dir / "config.json"))
    recorded["model_config"]["num_items"] += 1
    (other / "config.json").write_text(json.dumps(recorded))
    (other / "metrics.json").write_text(json.dumps(finished))
    with pytest.raises(training.RestoreError, match=r"num_items: \d+ recorded, \d+ here"):
        training.restore_model(str(other), data_dir)
    (other / "metrics.json").write_text(json.dumps({**finished, "xla_training": True}))
    with pytest.raises(training.RestoreError, match="HIERDIFFUSE_XLA_TRAINING"):
        training.restore_model(str(other), data_dir)
    other_scoring = not training.xla_scoring(HierDiffuse)
    (other / "metrics.json").write_text(json.dumps({**finished, "xla_scoring": other_scoring}))
    with pytest.raises(training.RestoreError, match="HIERDIFFUSE_XLA_SCORING"):
        training.restore_model(str(other), data_dir)
    assert not (other / "restoring").exists()
    # --finished-only restores nothing: a sampler row whose model is missing waits, as not yet run.
    os.remove(run_dir / "model.keras")
    os.remove(run_dir / "metrics_sampler=ddim.json")
    rows = experiments.table2(SMOKE, str(tmp_path), seeds=1, epochs=1, data_dir=data_dir, rows_spec=rows_spec,
                              batch_size=128, timing_batches_count=1, common=FAST + ["sampler_steps=2"],
                              finished_only=True, name="table2_partial")
    assert "w/ DDIM" not in [r["variant"] for r in rows] and not (run_dir / "restoring").exists()
    os.replace(tmp_path / "model.keras", run_dir / "model.keras")
    assert by["TCC (ours)"]["speed_source"] == "re-timed"
    # Under way: --finished-only writes the finished rows, trains nothing, and names the rest.
    partial = [r for r in experiments.TABLE2_ROWS if r.variant == "w/o L_recon"] + rows_spec
    rows = experiments.table2(SMOKE, str(tmp_path), seeds=1, epochs=1, data_dir=data_dir, rows_spec=partial,
                              batch_size=128, timing_batches_count=1, common=FAST + ["sampler_steps=2"],
                              finished_only=True, name="table2_partial")
    assert [r["variant"] for r in rows] == [r.variant for r in rows_spec]
    assert not (tmp_path / "runs" / "hierdiffuse__use_recon=false").exists()
    assert "**Not yet run:** 2(c) w/o L_recon." in (tmp_path / "table2_partial.md").read_text()
    # A run from before `loss_reduction` existed ran with the summed losses:
    # the drift check reads the missing field as its legacy value.
    recorded = json.load(open(run_dir / "config.json"))
    assert recorded["model_config"]["loss_reduction"] == "mean"
    del recorded["model_config"]["loss_reduction"]
    (run_dir / "config.json").write_text(json.dumps(recorded))
    drift = experiments.config_drift(str(run_dir), "hierdiffuse", SMOKE, data_dir,
                                     FAST + ["sampler_steps=2"], 1, 0)
    assert drift == ["loss_reduction: 'sum' -> 'mean'"]
    assert experiments.config_drift(str(run_dir), "hierdiffuse", SMOKE, data_dir,
                                    FAST + ["sampler_steps=2", "loss_reduction=sum"], 1, 0) == []


def test_a_tables_set_reaches_the_models_that_have_the_field():
    common = ["loss_reduction=sum", "embed_dim=16", "batch_size=512"]
    assert experiments.overrides_for("hierdiffuse", common, ("guidance=cfg",)) == common + ["guidance=cfg"]
    # DIN has no loss_reduction: it trains (and is drift-checked) without it.
    assert experiments.overrides_for("din", common, ()) == ["embed_dim=16", "batch_size=512"]
    # A field that no model has stays, so the config names the typo.
    assert experiments.overrides_for("din", ["loss_reducton=sum"], ()) == ["loss_reducton=sum"]


def test_learning_curves_average_the_seeds_over_the_epochs_all_of_them_ran():
    runs = {"a": [{"history": {"val_auc": [0.6, 0.7, 0.8]}}, {"history": {"val_auc": [0.7, 0.9]}}],
            "b": [{"history": {}}]}
    curves = experiments.learning_curves(runs)
    assert list(curves) == ["a"]  # No validation history, no curve.
    assert curves["a"]["epoch"] == [1, 2]
    assert curves["a"]["mean"] == pytest.approx([0.65, 0.8])
    assert curves["a"]["std"] == pytest.approx([0.05, 0.1])


@pytest.mark.slow
def test_robustness_writes_a_table_and_a_plot(smoke_builder, data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(experiments.tables, "NOISE_CONFIGS", {0.0: "smoke"})
    rows = experiments.robustness(str(tmp_path), [0.0], seeds=1, epochs=1, data_dir=data_dir,
                                  models=("avg_pool_dnn",), common=FAST)
    assert rows[0]["noise"] == 0.0 and rows[0]["model"] == "avg_pool_dnn"
    assert (tmp_path / "robustness.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no synthetic config for \\[0.7\\]"):
        experiments.robustness(str(tmp_path), [0.7])


def test_robustness_trains_the_free_noise_rates_before_waiting_for_a_held_run(tmp_path, monkeypatch):
    monkeypatch.setattr(experiments.tables, "NOISE_CONFIGS", {0.0: "a", 0.1: "b"})
    monkeypatch.setattr(pipeline, "prepared_builder", lambda *args, **kwargs: None)
    monkeypatch.setattr(experiments.tables, "plot_robustness", lambda rows, path: None)
    events = []

    def fake_train(model, dataset, run_dir, **kwargs):
        events.append(dataset.name)
        json.dump({"auc": 0.6, "logloss": 0.5}, open(os.path.join(run_dir, "metrics.json"), "w"))

    held = tmp_path / "a" / "runs" / "din" / "seed0"
    assert experiments.claim_run(str(held))  # Another process trains noise 0.0.

    def finish_elsewhere(seconds):
        events.append("waited")
        json.dump({"auc": 0.7, "logloss": 0.5}, open(held / "metrics.json", "w"))
        experiments.release_run(str(held))

    monkeypatch.setattr(training, "train", fake_train)
    patch_sleep(monkeypatch, finish_elsewhere)
    rows = experiments.robustness(str(tmp_path), [0.0, 0.1], seeds=1, models=("din",))
    assert events == ["synthetic_interest_ctr/b", "waited"]
    assert [(r["noise"], r["auc_mean"]) for r in rows] == [(0.0, 0.7), (0.1, 0.6)]


def test_readme_tables_are_spliced_from_results(tmp_path):
    (tmp_path / "table1.md").write_text("| model |\n|---|\n| din |\n")
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- results:table1 -->\nold\n<!-- /results:table1 -->\nb\n<!-- results:table2 -->x<!-- /results:table2 -->\n")
    assert experiments.splice_readme(str(readme), str(tmp_path)) == ["table1"]
    text = readme.read_text()
    assert "| din |" in text and "old" not in text and "x<!--" in text


def test_a_readme_block_naming_its_folder_is_filled_from_that_folder_only(tmp_path):
    for folder, model in (("ml100k", "mean"), ("ml100k-sum", "sum")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "table2.md").write_text(f"| {model} |\n")
    readme = tmp_path / "README.md"
    prose = "Quoted inline, `<!-- results:ml100k-sum/table2 -->` is not a block.\n"
    readme.write_text(prose + "<!-- results:ml100k/table2 -->\n<!-- /results:ml100k/table2 -->\n"
                      "<!-- results:ml100k-sum/table2 -->\n<!-- /results:ml100k-sum/table2 -->\n")
    for folder in ("ml100k", "ml100k-sum"):
        assert experiments.splice_readme(str(readme), str(tmp_path / folder) + "/") == [f"{folder}/table2"]
    assert readme.read_text() == prose + ("<!-- results:ml100k/table2 -->\n| mean |\n<!-- /results:ml100k/table2 -->\n"
                                  "<!-- results:ml100k-sum/table2 -->\n| sum |\n<!-- /results:ml100k-sum/table2 -->\n")


@pytest.mark.parametrize("row", [r for r in experiments.TABLE2_ROWS if r.train], ids=lambda r: r.variant)
def test_ablation_switches_change_only_what_they_name(row):
    base_values = dict(num_items=30, num_cats=5, max_long=4, num_sessions=2, session_len=2,
                       embed_dim=8, encoder_ffn_dim=8, denoiser_units=8, time_embed_dim=8)
    changes = {k: v for k, v in (s.split("=") for s in row.train)}
    base = HierDiffuseConfig(**base_values)
    values = base.to_dict()
    from hierdiffuse_tf.config import apply_overrides

    apply_overrides(values, {}, HierDiffuseConfig, list(row.train))
    switched = HierDiffuseConfig.from_dict(values)
    differing = {k for k in values if getattr(base, k) != getattr(switched, k)}
    assert differing == set(changes)  # The config differs in the named fields only.
    shapes = {}
    for config in (base, switched):
        model = HierDiffuse(config)
        model(random_features(config, 2))
        shapes[config] = {w.path.split("/", 1)[1]: tuple(w.shape) for w in model.weights}
    changed = {p for p in shapes[base].keys() | shapes[switched].keys()
               if shapes[base].get(p) != shapes[switched].get(p)}
    # Where each switch may change weights; losses, the sampler and the head's noise change none.
    owners = {"backbone": ("guided_denoiser/",), "guidance": ("guided_denoiser/",),
              "direction": ("guided_denoiser/g_",),
              "readout": ("long_readout/activation_unit", "short_readout/activation_unit",
                          "long_readout/position_bias", "short_readout/position_bias"),
              "readout_recency": ("long_readout/position_bias", "short_readout/position_bias"),
              "encoder_gate": ("long_encoder/gate", "short_encoder/gate"),
              "long_encoder_layers": ("long_encoder/block_",),
              "normalize_x0": ("x0_norm/",), "head_short_cross": ("head/hidden_0/kernel",),
              "sampler": ("guided_denoiser/",)}  # No fusion stage: the denoiser is never built.
    allowed = tuple(p for k in changes for p in owners.get(k, ()))
    assert all(p.startswith(allowed) for p in changed) if allowed else not changed, changed
    if {"backbone", "guidance"} & set(changes):
        assert changed


def test_train_runs_waits_for_a_run_held_by_another_process(tmp_path, monkeypatch):
    trained = []

    def fake_train(model, dataset, run_dir, **kwargs):
        trained.append(run_dir)
        json.dump({"auc": 0.5}, open(os.path.join(run_dir, "metrics.json"), "w"))

    monkeypatch.setattr(training, "train", fake_train)
    held = tmp_path / "runs" / "din" / "seed0"
    assert experiments.claim_run(str(held))  # "Another process" (a live pid: ours) holds it.
    assert not experiments.claim_run(str(held))
    jobs = [("din", ()), ("avg_pool_dnn", ())]
    patch_sleep(monkeypatch, lambda seconds: pytest.fail("wait=False waited"))
    # wait=False trains what is free and leaves the held run to its process.
    assert experiments.train_runs(str(tmp_path), SMOKE, jobs, 1, 1, None, wait=False) is None
    assert trained == [str(tmp_path / "runs" / "avg_pool_dnn" / "seed0")]

    def finish_elsewhere(seconds):  # The other process finishes while we wait.
        json.dump({"auc": 0.7}, open(held / "metrics.json", "w"))
        experiments.release_run(str(held))

    patch_sleep(monkeypatch, finish_elsewhere)
    runs = experiments.train_runs(str(tmp_path), SMOKE, jobs, seeds=1, epochs=1, data_dir=None)
    assert trained == [str(tmp_path / "runs" / "avg_pool_dnn" / "seed0")]  # Not trained twice.
    assert runs["din"][0]["auc"] == 0.7 and not (held / "train.lock").exists()


def test_restore_models_waits_for_a_run_held_by_another_process(tmp_path, monkeypatch, capsys):
    restored = []

    def fake_restore(run_dir, data_dir, verbose=0):
        restored.append(run_dir)
        open(os.path.join(run_dir, "model.keras"), "w").close()

    monkeypatch.setattr(training, "restore_model", fake_restore)
    held, free, kept = (str(tmp_path / "runs" / k / "seed0") for k in ("held", "free", "kept"))
    os.makedirs(kept)
    open(os.path.join(kept, "model.keras"), "w").close()
    assert experiments.claim_run(held)  # "Another process" restores it.

    def restore_elsewhere(seconds):
        open(os.path.join(held, "model.keras"), "w").close()
        experiments.release_run(held)

    patch_sleep(monkeypatch, restore_elsewhere)
    experiments.runs.restore_models([held, free, kept, free])
    assert restored == [free]  # Neither the other process's run nor a run with a model, nor twice.
    assert f"waiting for another process to restore: {held}" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(held, "train.lock"))


def test_claim_run_waits_while_another_process_holds_the_lock(tmp_path):
    # The holder has locked the file but not yet written its pid: the lock, not the pid, decides.
    lock = tmp_path / "run" / "train.lock"
    lock.parent.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(lock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not experiments.claim_run(str(lock.parent))
    finally:
        holder.kill()
        holder.wait()
    assert experiments.claim_run(str(lock.parent))  # The kernel dropped the dead holder's lock.
    assert lock.read_text() == str(os.getpid())
    experiments.release_run(str(lock.parent))
    assert not lock.exists()


def test_claim_run_takes_over_a_lock_left_by_a_dead_process(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train.lock").write_text("999999999")  # No such pid.
    assert experiments.claim_run(str(run_dir))
    assert (run_dir / "train.lock").read_text() == str(os.getpid())
    experiments.release_run(str(run_dir))


def test_tuning_trials_start_from_the_defaults_and_never_repeat():
    trials = experiments.tuning_trials(5)
    assert trials[0] == () and len(set(trials)) == 5
    assert trials == experiments.tuning_trials(5)  # The same candidates for every model.
    with pytest.raises(ConfigError, match="--trials"):
        experiments.tuning_trials(100)


@pytest.mark.slow
def test_tune_selects_on_validation_and_table1_trains_the_winner(smoke_builder, data_dir, tmp_path):
    argv = ["experiment", "tune", "--dataset", SMOKE, "--data-dir", data_dir, "--trials", "2",
            "--epochs", "1", "--out", str(tmp_path), "--models", "avg_pool_dnn",
            *sum((["--set", s] for s in FAST), [])]
    assert cli.main(argv) == 0
    tuning = json.load(open(tmp_path / "tuning.json"))
    trials = [r for r in tuning["rows"] if r["model"] == "avg_pool_dnn"]
    assert len(trials) == 2 and sum(r["chosen"] == "yes" for r in trials) == 1
    chosen = max(trials, key=lambda r: r["val_auc"])
    assert chosen["chosen"] == "yes" and tuning["meta"]["selected_on"] == "validation"
    assert all(r["best_epochs"] == "1/1" for r in trials)
    for overrides in experiments.tuning_trials(2):  # Tuning never evaluates the test split.
        key = experiments.run_key("avg_pool_dnn", overrides)
        metrics = json.load(open(tmp_path / "tuning" / "runs" / key / "seed0" / "metrics.json"))
        assert metrics["split"] == "validation"
    tuned = experiments.load_tuned(str(tmp_path / "tuning.json"))
    best = tuned["best"]["avg_pool_dnn"]
    rows = experiments.table1(SMOKE, str(tmp_path), seeds=1, epochs=1, data_dir=data_dir,
                              models=("avg_pool_dnn",), batch_size=128, timing_batches_count=2,
                              common=FAST, tuned=tuned)
    assert rows[0]["tuned_overrides"] == list(best)
    assert json.load(open(tmp_path / "table1.json"))["meta"]["tuned_from"]["best"] == {"avg_pool_dnn": list(best)}
    # Every model of the table must have been tuned, and tuned fields are not set by hand.
    with pytest.raises(ConfigError, match=r"no entry for \['din'\]"):
        experiments.table1(SMOKE, str(tmp_path), models=("avg_pool_dnn", "din"), tuned=tuned)
    with pytest.raises(ConfigError, match="learning_rate"):
        experiments.table1(SMOKE, str(tmp_path), models=("avg_pool_dnn",), tuned=tuned,
                           common=["learning_rate=0.01"])
    # The winner's seed-0 run is its tuning run, evaluated on test instead of trained again.
    key = experiments.run_key("avg_pool_dnn", best)
    table_run = json.load(open(tmp_path / "runs" / key / "seed0" / "metrics.json"))
    assert table_run["split"] == "test"
    assert table_run["evaluated_from"] == str(tmp_path / "tuning" / "runs" / key / "seed0")
    tuning_run = json.load(open(tmp_path / "tuning" / "runs" / key / "seed0" / "metrics.json"))
    for field in ("best_epoch", "epochs_run", "xla_training", "seconds", "epoch_commits"):  # Its training record.
        assert table_run[field] == tuning_run[field]
    train_config = rows[0]["config"]["train_config"]
    for override in best:
        name, value = override.split("=")
        source = train_config if name in train_config else rows[0]["config"]["model_config"]
        assert source[name] == pytest.approx(float(value))


@pytest.mark.slow
def test_tune_evaluates_a_tables_run_of_the_same_config_instead_of_retraining(
        smoke_builder, data_dir, tmp_path, monkeypatch):
    table_runs = experiments.train_runs(str(tmp_path), SMOKE, [("avg_pool_dnn", ())], 1, 1, data_dir, FAST)
    source = table_runs["avg_pool_dnn"][0]
    trained = []
    real_train = training.train
    monkeypatch.setattr(training, "train",
                        lambda *args, **kwargs: trained.append(kwargs["overrides"]) or real_train(*args, **kwargs))
    experiments.tune(SMOKE, str(tmp_path), models=("avg_pool_dnn",), trials=2, epochs=1,
                     data_dir=data_dir, common=FAST)
    second_trial = experiments.overrides_for("avg_pool_dnn", FAST, experiments.tuning_trials(2)[1])
    assert trained == [second_trial]  # The defaults were the table's run, evaluated again.
    reused = json.load(open(tmp_path / "tuning" / "runs" / "avg_pool_dnn" / "seed0" / "metrics.json"))
    assert reused["split"] == "validation" and reused["evaluated_from"] == source["run_dir"]
    assert reused["history"] == source["history"] and reused["seconds"] == source["seconds"]
    on_validation = training.evaluate_run(source["run_dir"], SMOKE, "validation", data_dir, 512)
    assert reused["auc"] == pytest.approx(on_validation["auc"], abs=1e-9)
    assert reused["auc"] != pytest.approx(source["auc"], abs=1e-9)  # Not the table's test AUC.
    # A run under any other config or seed is trained, never taken from the table.
    reusable = functools.partial(experiments.runs._reusable_run, str(tmp_path), "avg_pool_dnn")
    fast = experiments.overrides_for("avg_pool_dnn", FAST, [])  # The fields Avg-Pool has.
    assert reusable(0, "avg_pool_dnn", SMOKE, data_dir, fast, 1) == source["run_dir"]
    assert reusable(0, "avg_pool_dnn", SMOKE, data_dir, [*tiny_sets("avg_pool_dnn"), "batch_size=256"],
                    1) is None
    assert reusable(0, "avg_pool_dnn", SMOKE, data_dir, fast, 2) is None
    assert reusable(1, "avg_pool_dnn", SMOKE, data_dir, fast, 1) is None


def test_reproduce_tunes_then_trains_both_tables_with_the_winners_under_one_out(tmp_path, monkeypatch):
    from hierdiffuse_tf.experiments import reproduction

    calls = []

    def fake_tune(data, out, models, trials, epochs, data_dir, common, command):
        calls.append(("tune", out, tuple(models), trials, epochs, tuple(common)))
        with open(os.path.join(out, "tuning.json"), "w") as f:  # What `tune` writes: the tables read it.
            json.dump({"meta": {"best": {m: ["dropout=0.2"] if m == "hierdiffuse" else [] for m in models}},
                       "rows": []}, f)

    def fake_table(name):
        def run(data, out, seeds, tuned, epochs, common, rows_spec=(), seeds_for=None, **kwargs):
            calls.append((name, out, seeds, tuned["best"]["hierdiffuse"], epochs, tuple(common),
                          seeds_for, "".join(sorted({r.group for r in rows_spec}))))
            return [name]
        return run

    monkeypatch.setattr(pipeline, "open_dataset", lambda dataset, data_dir=None, **kwargs: ANY)
    monkeypatch.setattr(reproduction, "train_ahead", lambda data, out, trials, counts, seeds, rows_spec, **kw:
                        calls.append(("ahead", out, trials, counts["diffurec"], seeds, len(rows_spec))))
    monkeypatch.setattr(reproduction, "tune", fake_tune)
    monkeypatch.setattr(reproduction, "table1", fake_table("table1"))
    monkeypatch.setattr(reproduction, "table2", fake_table("table2"))
    out = str(tmp_path)
    argv = ["experiment", "reproduce", "--dataset", "movielens_1m_ctr", "--out", out, "--trials", "3",
            "--epochs", "2", "--set", "patience=1", "--seeds-for", "diffurec=2", "--groups", "d,e"]
    assert cli.main(argv) == 0
    assert calls == [
        ("ahead", out, 3, 2, 3, len(experiments.select_rows("d,e"))),
        ("tune", out, experiments.TABLE1_MODELS, 3, 2, ("patience=1",)),
        ("table1", out, 3, ("dropout=0.2",), 2, ("patience=1",), {"diffurec": 2}, ""),
        ("table2", out, 3, ("dropout=0.2",), 2, ("patience=1",), None, "de"),
    ]
    assert cli.main(["experiment", "reproduce", "--groups", "d,z", "--out", out]) == 2  # Checked by name.
    calls.clear()  # A tuned field set by hand is refused before anything trains.
    assert cli.main(argv + ["--set", "learning_rate=0.01"]) == 2 and calls == []


def test_train_ahead_trains_each_models_table_runs_once_its_own_trials_are_in(tmp_path, monkeypatch):
    """With one model's trials still held by another process, the other models' Table 1 runs
    and Table 2's (HierDiffuse's winner known) are trained first, then the trials left,
    nothing is waited for, and trials that make no new winner known end it."""
    from hierdiffuse_tf.experiments import reproduction

    trials = experiments.tuning_trials(2)
    aucs = {"hierdiffuse": (0.90, 0.93), "dien": None}  # DIEN's trials: held elsewhere.
    for model in experiments.TABLE1_MODELS:
        for trial, auc in zip(trials, aucs.get(model, (0.80, 0.70)) or ()):
            run_dir = experiments.runs.run_dir_of(str(tmp_path / "tuning"), experiments.run_key(model, trial), 0)
            os.makedirs(run_dir)
            with open(os.path.join(run_dir, "metrics.json"), "w") as f:
                json.dump({"auc": auc, "split": "validation"}, f)
    calls = []

    def fake_train_runs(out, data, jobs, seeds, **kwargs):
        assert kwargs["wait"] is False and kwargs["epochs"] == 2
        calls.append((os.path.relpath(out, tmp_path), [experiments.run_key(*job) for job in jobs], seeds))

    monkeypatch.setattr(reproduction, "train_runs", fake_train_runs)
    counts = experiments.seed_counts(experiments.TABLE1_MODELS, 3, {"diffurec": 1})
    reproduction.train_ahead(ANY, str(tmp_path), 2, counts, 3, experiments.select_rows("e:short->long"),
                             epochs=2, common=["patience=1"])
    ready = [m for m in experiments.TABLE1_MODELS if m != "dien"]
    hd = experiments.run_key("hierdiffuse", trials[1])  # Its second trial won; the others' first.
    assert [c[0] for c in calls] == [".", ".", "tuning"]  # Then no new winner: done.
    assert calls[0][1:] == ([hd if m == "hierdiffuse" else m for m in ready], {m: counts[m] for m in ready})
    assert calls[1][1:] == ([experiments.run_key("hierdiffuse", (*trials[1], "direction=short_to_long")), hd], 3)
    assert calls[2][1] == [experiments.run_key(m, t) for m in experiments.TABLE1_MODELS for t in trials]
    # Trials that make a winner known (DIEN's, finished by now) bring its Table 1 runs.
    calls.clear()

    def trials_finish(out, data, jobs, seeds, **kwargs):
        fake_train_runs(out, data, jobs, seeds, **kwargs)
        for trial, auc in zip(trials, (0.85, 0.86)):
            run_dir = experiments.runs.run_dir_of(str(tmp_path / "tuning"), experiments.run_key("dien", trial), 0)
            os.makedirs(run_dir, exist_ok=True)
            with open(os.path.join(run_dir, "metrics.json"), "w") as f:
                json.dump({"auc": auc, "split": "validation"}, f)

    monkeypatch.setattr(reproduction, "train_runs", trials_finish)
    reproduction.train_ahead(ANY, str(tmp_path), 2, counts, 3, experiments.select_rows("e:short->long"),
                             epochs=2, common=["patience=1"])
    assert [c[0] for c in calls] == [".", ".", "tuning", ".", ".", "tuning"]
    assert experiments.run_key("dien", trials[1]) in calls[3][1] and "dien" not in calls[0][2]


def test_a_sampler_row_is_timed_at_its_faster_compile(monkeypatch):
    from hierdiffuse_tf.experiments import tables

    compiled = []
    monkeypatch.setattr(tables.training, "compiled_scorer",
                        lambda model, **kw: compiled.append((model, kw.get("jit_compile"))) or model)
    monkeypatch.setattr(tables, "time_batches", lambda fns, batches, repeats: {
        "tcc": 90.0, "ddpm": 10.0, "ddpm (plain graph)": 15.0})
    speed = tables.time_inference({"tcc": "m1", "ddpm": "m2"}, [], either_compile=["ddpm"])
    assert speed == {"tcc": 90.0, "ddpm": 15.0}
    assert compiled == [("m1", None), ("m2", None), ("m2", False)]  # The default (XLA), and the plain graph.


def test_a_table_names_the_commits_its_runs_were_trained_under(tmp_path, monkeypatch):
    from hierdiffuse_tf.experiments import report

    runs = []
    for i, commit in enumerate(["a" * 40, "b" * 40 + "-dirty", "a" * 40, None]):
        run_dir = tmp_path / "runs" / f"seed{i}"
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text(json.dumps({"git_commit": commit}))
        runs.append({"run_dir": str(run_dir)})
    runs = {"din": runs}  # As `train_runs` returns them: each key's seeds.
    assert report.run_commits(runs) == ["aaaaaaaaaa", "bbbbbbbbbb-dirty"]
    # A run resumed in a later session: its config names the last commit, its metrics every epoch's.
    runs["din"][0]["epoch_commits"] = ["c" * 40, "a" * 40]
    assert report.run_commits(runs) == ["aaaaaaaaaa", "bbbbbbbbbb-dirty", "cccccccccc"]
    del runs["din"][0]["epoch_commits"]
    monkeypatch.setattr(report.training, "git_commit", lambda: "a" * 40)
    meta = report.table_meta("movielens_1m_ctr", 3, 2, None, "hierdiffuse experiment table1", runs)
    report.write_table([{"model": "din"}], [("model", "model", "{}")], str(tmp_path), "t", meta)
    caption = (tmp_path / "t.md").read_text()
    assert "commit aaaaaaaaaa (runs trained at aaaaaaaaaa, bbbbbbbbbb-dirty);" in caption
    meta = report.table_meta("movielens_1m_ctr", 3, 2, None, "hierdiffuse experiment table1", {"din": runs["din"][:1]})
    report.write_table([{"model": "din"}], [("model", "model", "{}")], str(tmp_path), "t", meta)
    assert "commit aaaaaaaaaa; made by" in (tmp_path / "t.md").read_text()  # One commit: said once.


def test_select_rows_takes_groups_or_a_groups_rows_by_name_with_its_reference_row():
    rows = experiments.select_rows("d, f:No Fusion")
    assert [(r.group, r.variant) for r in rows] == [
        ("d", "w/ DDPM"), ("d", "w/ DDIM"), ("d", "TCC (ours)"),
        ("f", "no fusion stage (h_fusion = x0)"), ("f", "ours (SPEC 2b)")]
    assert experiments.select_rows("e,e:short->long") == experiments.select_rows("e")  # No row twice.
    with pytest.raises(ConfigError, match="unknown group 'z'"):
        experiments.select_rows("d,z")
    with pytest.raises(ConfigError, match="no row of group f has 'fusoin'.*no fusion stage"):
        experiments.select_rows("f:fusoin")


def test_status_reads_finished_training_and_stopped_runs_without_taking_their_locks(tmp_path, capsys):
    def run(path, metrics=None, record=None, pid=None, states=True):
        run_dir = tmp_path / path
        (run_dir / "backup").mkdir(parents=True)
        if metrics:
            (run_dir / "metrics.json").write_text(json.dumps(metrics))
        if record:
            (run_dir / "backup" / "run_record.json").write_text(json.dumps(record))
            (run_dir / "backup" / "training_metadata.json").write_text(json.dumps({"epoch": record["epochs"]}))
            if states:
                np.savez(run_dir / "backup" / run_record.SEED_STATES)
        if pid:
            (run_dir / "train.lock").write_text(str(pid))
        return run_dir

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # Its pid names no live process now.
    run("runs/din/seed0", metrics={"auc": 0.77, "split": "test", "epochs_run": 2,
                                   "history": {"val_auc": [0.85, 0.87]}})
    held = run("runs/din/seed1", record={"epochs": 1, "history": {"val_auc": [0.86]}}, pid=os.getpid())
    run("runs/din/seed2", record={"epochs": 1, "history": {"val_auc": [0.84]}}, pid=dead.pid)
    run("runs/din/seed3", record={"epochs": 1, "history": {"val_auc": [0.83]}}, states=False)
    run("tuning/runs/dien/seed0", pid=dead.pid)
    (tmp_path / "runs" / "din" / "notes.txt").write_text("not a run")

    assert cli.main(["experiment", "status", "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "| runs/din/seed0 | finished | 2 | 0.8500, 0.8700 | test AUC 0.7700 |" in table
    assert f"| runs/din/seed1 | training (pid {os.getpid()}) | 1 | 0.8600 | - |" in table
    assert "| runs/din/seed2 | stopped | 1 | 0.8400 | - |" in table
    # Backed up before the random states were kept: it will start again, and says so.
    assert "| runs/din/seed3 | stopped | 1 | 0.8300 | starts again from epoch 1 (backup not resumable) |" in table
    assert "| tuning/runs/dien/seed0 | stopped | 0 | - | - |" in table
    assert "1 finished, 1 training, 3 stopped" in table
    assert (tmp_path / "runs" / "din" / "seed3" / "backup").is_dir()  # Read only: nothing removed.
    assert "| din | 1 | 0.7700 ± 0.0000 |" in table  # Finished table seeds only, not tuning runs.
    assert (held / "train.lock").read_text() == str(os.getpid())  # Read, never claimed or removed.
    assert experiments.claim_run(str(held))  # Nothing of status's holds it.
    experiments.release_run(str(held))
    assert cli.main(["experiment", "status", "--out", str(tmp_path / "absent")]) == 2


def test_load_tuned_names_a_file_without_results(tmp_path):
    path = tmp_path / "table1.json"
    path.write_text(json.dumps({"meta": {}, "rows": []}))
    with pytest.raises(ConfigError, match="experiment tune"):
        experiments.load_tuned(str(path))


def test_tune_picks_the_best_finite_validation_auc(tmp_path, monkeypatch):
    winner = ("learning_rate=0.0003", "dropout=0.0")
    planted = {winner: 0.75, ("learning_rate=0.003",): float("nan")}  # A diverged trial never wins,
    diverged = ("dropout=0.2",)  # nor one whose AUC reads high but whose log loss is NaN.

    def fake_train(model, dataset, run_dir, overrides=(), eval_split="test", **kwargs):
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "metrics.json"), "w") as f:
            auc = float("nan") if model == "dien" else planted.get(tuple(overrides), 0.6)
            auc, logloss = (0.99, float("nan")) if tuple(overrides) == diverged else (auc, 0.5)
            json.dump({"auc": auc, "logloss": logloss, "split": eval_split}, f)

    monkeypatch.setattr(training, "train", fake_train)
    assert set(planted) | {diverged} <= set(experiments.tuning_trials(9))
    assert experiments.tune(ANY, str(tmp_path), models=("din",), trials=9) == {"din": list(winner)}
    with pytest.raises(ConfigError, match="every trial of dien diverged"):
        experiments.tune(ANY, str(tmp_path), models=("dien",), trials=2)
    with pytest.raises(ConfigError, match="dropout"):
        experiments.tune(ANY, str(tmp_path), models=("din",), trials=2, common=["dropout=0.3"])
    # A table never reuses a run that was evaluated on another split.
    with pytest.raises(ConfigError, match="evaluated on 'validation'"):
        experiments.train_runs(str(tmp_path / "tuning"), ANY, [("din", ())], 1, 1, None)


def test_a_flag_the_experiment_does_not_read_is_a_one_line_error_even_at_its_default(capsys):
    argv = ["experiment", "robustness", "--dataset", "movielens_100k_ctr"]  # The default dataset.
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err == "error: --dataset is for tune and compare and table1 and table2 and reproduce, not robustness\n"


def test_tuned_is_refused_where_it_would_be_ignored(tmp_path):
    with pytest.raises(ConfigError, match="--tuned is for table1 and table2"):
        cli.run_experiment(cli.build_parser().parse_args(
            ["experiment", "robustness", "--tuned", str(tmp_path / "tuning.json")]))


def test_compare_reads_validation_only_and_takes_deltas_against_the_defaults(tmp_path, monkeypatch):
    planted = {(): [0.70, 0.80], ("alpha=0.1",): [0.75, 0.82], ("t_star=5", "sampler_steps=5"): [0.6, 0.78]}
    splits = []

    def fake_train(model, dataset, run_dir, overrides=(), eval_split="test", **kwargs):
        splits.append(eval_split)
        curve = planted[tuple(overrides)]
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "metrics.json"), "w") as f:
            json.dump({"auc": curve[-1], "logloss": 0.5, "split": eval_split,
                       "history": {"val_auc": curve}}, f)

    monkeypatch.setattr(training, "train", fake_train)
    rows = experiments.compare(ANY, str(tmp_path), [["alpha=0.1"], ["t_star=5", "sampler_steps=5"], []])
    assert splits == ["validation"] * 3  # The defaults come first and once; test is never read.
    assert [r["variant"] for r in rows] == ["(defaults)", "alpha=0.1", "t_star=5 sampler_steps=5"]
    assert [r["delta"] for r in rows] == pytest.approx([0.0, 0.02, -0.02])
    assert [r["val_auc_epoch1"] for r in rows] == pytest.approx([0.70, 0.75, 0.6])
    assert "| alpha=0.1 | 0.8200 ± 0.0000 | +0.0200 | 0.7500 |" in (tmp_path / "compare_hierdiffuse.md").read_text()
    assert (tmp_path / "compare_hierdiffuse_curves.png").stat().st_size > 1000
    # The defaults run is shared with `tune`'s first trial.
    assert os.path.exists(tmp_path / "tuning" / "runs" / "hierdiffuse" / "seed0" / "metrics.json")


@pytest.mark.parametrize("argv, message", [
    (["experiment", "compare"], "at least one --variant"),
    (["experiment", "compare", "--variant", "alpha=0.1", "--models", "din,dien"], "one model"),
    (["experiment", "table1", "--variant", "alpha=0.1"], "--variant is for compare"),
    (["experiment", "tune", "--name", "table1_defaults"], "--name is for table1 and table2"),
    (["experiment", "table1", "--groups", "a"], "--groups is for table2 and reproduce, not table1"),
    (["experiment", "tune", "--seeds", "2"], "--seeds is for compare and table1 and table2 and reproduce and robustness"),
    (["experiment", "robustness", "--dataset", "x"], "--dataset is for tune and compare and table1 and table2"),
    (["experiment", "table1", "--models", "din,dinn"], "Unknown model 'dinn'"),
    (["experiment", "robustness", "--noise", "0,abc"], "--noise: expected comma-separated rates"),
    (["experiment", "table1", "--name", "ml100k/table1"], "'ml100k/table1' is not a table name"),
    (["experiment", "table1", "--seeds-for", "din"], "--seeds-for: expected MODEL=N"),
    (["experiment", "table1", "--seeds-for", "din=0"], "--seeds-for: expected MODEL=N"),
    (["experiment", "table1", "--seeds-for", "dinn=1"], "Unknown model 'dinn'"),
    (["experiment", "table2", "--seeds-for", "din=1"], "--seeds-for is for table1"),
    (["experiment", "table1", "--seeds-for", "din=²"], "--seeds-for: expected MODEL=N"),
    (["experiment", "table1", "--models", "din", "--seeds-for", "dien=1"], "names models that the table does not train"),
])
def test_compare_arguments_are_checked(argv, message, tmp_path):
    with pytest.raises(ConfigError, match=message):  # Before any dataset is looked for.
        cli.run_experiment(cli.build_parser().parse_args([*argv, "--data-dir", str(tmp_path)]))


@pytest.mark.parametrize("argv, present, absent", [
    (["experiment", "robustness"], {"--noise", "--seeds", "--models"}, {"--dataset", "--tuned", "--trials"}),
    (["experiment", "table2"], {"--groups", "--tuned", "--name"}, {"--models", "--noise", "--variant"}),
    (["experiment", "reproduce"], {"--trials", "--seeds", "--seeds-for", "--groups", "--set", "--epochs"},
     {"--models", "--tuned", "--name", "--finished-only"}),
    (["bench", "beam"], {"--rows", "--workers", "--json"}, {"--steps", "--set", "--dataset"}),
    (["experiment", "status"], {"--out"}, {"--dataset", "--seeds", "--set"}),
])
def test_each_sub_command_lists_exactly_its_own_flags(argv, present, absent, capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args([*argv, "--help"])
    flags = set(re.findall(r"--[a-z-]+", capsys.readouterr().out))
    assert present <= flags and not absent & flags


def test_a_benchmark_flag_given_to_another_benchmark_is_a_one_line_error(capsys):
    assert cli.main(["bench", "beam", "--steps", "3"]) == 2
    assert capsys.readouterr().err == "error: --steps is for train and profile and xla and data and epoch, not beam\n"


def test_a_shortened_flag_is_not_taken_for_a_longer_one(capsys):
    assert cli.main(["experiment", "robustness", "--data", "movielens_100k_ctr"]) == 2
    assert "unrecognized arguments: --data" in capsys.readouterr().err
    assert cli.main(["bench", "fusion", "--batch-sizes", "256,big"]) == 2
    assert "--batch-sizes: expected comma-separated integers" in capsys.readouterr().err
    assert cli.main(["bench", "train", "--set", "batch_size=1024"]) == 2
    assert "training fields" in capsys.readouterr().err


def test_a_bench_set_is_read_by_the_benched_model_that_has_the_field(monkeypatch, capsys):
    from hierdiffuse_tf.bench import training as bench_training

    seen = {}
    monkeypatch.setattr(bench_training, "bench_train", lambda models, **kw: seen.update(models=models, **kw) or {})
    monkeypatch.setattr("hierdiffuse_tf.bench.timing.write", lambda *a, **k: None)
    monkeypatch.setattr(bench_training, "markdown_throughput", lambda result: "the table")
    assert cli.main(["bench", "train", "--models", "diffurec,din", "--set", "denoiser=sequence",
                     "--set", "attention_units=8,4"]) == 0
    assert seen["models"] == ("diffurec", "din") and seen["repeats"] == 2
    assert seen["model_values"] == {"denoiser": "sequence", "attention_units": (8, 4)}
    assert "the table" in capsys.readouterr().out  # Printed, as every benchmark's is.
    # A field that no benched model has is refused by name.
    assert cli.main(["bench", "train", "--models", "din", "--set", "attention_unit=8"]) == 2
    assert "'attention_unit' for any model. Did you mean 'attention_units'" in capsys.readouterr().err
