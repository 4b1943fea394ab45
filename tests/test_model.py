"""HierDiffuse end to end: training with model.fit, saving, ablation switches (resume: test_resume.py)."""

import json
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import SMOKE, TINY_MODEL, random_features, tiny_sets
from hierdiffuse_tf import cli, training
from hierdiffuse_tf.config import PAPER_AS_PRINTED, ConfigError, HierDiffuseConfig, TrainConfig
from hierdiffuse_tf.datasets import pipeline
from hierdiffuse_tf.diffusion import tcc
from hierdiffuse_tf.models import HierDiffuse, build_model

SMALL = dict(num_items=50, num_cats=8, max_long=6, num_sessions=2, session_len=3, **TINY_MODEL)


def train_small(model_name, data_dir, out):
    """3 epochs on the noise-free synthetic set through the CLI, with the small test model."""
    code = cli.main(["train", "--dataset", SMOKE, "--data-dir", data_dir, "--model", model_name,
                     "--epochs", "3", "--seed", "0", "--out", out,
                     "--set", "batch_size=128", "--set", "learning_rate=0.003",
                     *sum((["--set", s] for s in tiny_sets(model_name)), [])])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def trained_run(smoke_builder, data_dir, tmp_path_factory):
    """A small HierDiffuse trained for 3 epochs on the noise-free synthetic set, through the CLI."""
    return train_small("hierdiffuse", data_dir, str(tmp_path_factory.mktemp("run")))


@pytest.mark.slow
def test_hierdiffuse_learns_the_planted_interest_better_than_din(trained_run, data_dir, tmp_path):
    metrics = json.load(open(os.path.join(trained_run, "metrics.json")))
    din = json.load(open(os.path.join(train_small("din", data_dir, str(tmp_path)), "metrics.json")))
    # The same data, steps, batch and learning rate; measured 0.864 against DIN's 0.807
    # (the paper-as-printed model scored about 0.70 here).
    assert metrics["auc"] > din["auc"] + 0.02, (metrics["auc"], din["auc"])
    assert metrics["auc"] > 0.80, metrics  # Chance is 0.5.
    assert {"auc", "logloss", "gauc", "examples", "seconds"} <= metrics.keys()
    assert metrics["examples"] == 1332
    # train_step reports every loss term, and the schedules follow optimizer.iterations.
    history = metrics["history"]
    assert {"loss", "bce", "recon", "tr", "tr_weight", "dt", "auc", "val_auc", "val_loss"} <= history.keys()
    assert history["tr_weight"][0] > history["tr_weight"][-1] >= 0.2
    assert os.listdir(os.path.join(trained_run, "logs"))  # TensorBoard logs.
    config = json.load(open(os.path.join(trained_run, "config.json")))
    assert config["model_config"]["embed_dim"] == 16 and config["train_config"]["seed"] == 0


@pytest.mark.slow
def test_saved_model_keras_file_scores_equal_the_trained_model(trained_run, smoke_builder):
    model = keras.saving.load_model(os.path.join(trained_run, "model.keras"))
    assert isinstance(model, HierDiffuse) and model.config.embed_dim == 16
    features, _ = next(iter(pipeline.make_dataset(smoke_builder, "test", 64)))
    first = model(features)["ctr"].numpy()
    again = keras.saving.load_model(os.path.join(trained_run, "model.keras"))(features)["ctr"].numpy()
    np.testing.assert_array_equal(first, again)


@pytest.mark.slow
def test_evaluate_command_reproduces_the_test_auc(trained_run, data_dir, capsys):
    assert cli.main(["evaluate", "--model-dir", trained_run, "--dataset", SMOKE, "--data-dir", data_dir]) == 0
    out = capsys.readouterr().out
    printed = json.loads(out[out.rindex("\n{\n") + 1:])  # The summary follows the progress bar.
    saved = json.load(open(os.path.join(trained_run, "metrics.json")))
    assert printed["auc"] == pytest.approx(saved["auc"], abs=1e-6)
    assert printed["examples"] == saved["examples"]
    assert printed["xla_scoring"] is saved["xla_scoring"] is False  # The suite's plain graph (conftest).


def test_without_dropout_the_head_reads_the_same_h_fusion_in_training_as_at_inference():
    model = HierDiffuse(HierDiffuseConfig(**SMALL, dropout=0.0, cond_dropout=0.0))
    x = random_features(model.config, 16)
    model(x)
    target = model.embedding(x["target_item"], x["target_cat"])
    trained_inputs = model.diffusion_inputs(model.read_out(model.encode(x, training=True), target))
    h_train, aux, _ = model.fuse_and_train(*trained_inputs)
    h_serve = model.fuse(*model.fusion_inputs(x))
    np.testing.assert_allclose(h_train.numpy(), h_serve.numpy(), rtol=1e-5, atol=1e-6)
    assert float(aux) > 0  # The TCC losses still see noisy points.
    noisy = HierDiffuse(model.config.replace(head_on_clean=False))  # The paper's Eq. 1 in training.
    noisy(x)
    noisy.set_weights(model.get_weights())
    h_noisy, _, _ = noisy.fuse_and_train(*trained_inputs)
    assert not np.allclose(h_noisy.numpy(), h_serve.numpy(), atol=1e-3)


def test_the_paper_config_is_the_model_as_printed(smoke_data):
    _, paper, _ = training.resolve_configs("hierdiffuse", smoke_data, "hierdiffuse_paper")
    assert {k: getattr(paper, k) for k in PAPER_AS_PRINTED} == PAPER_AS_PRINTED
    _, default, _ = training.resolve_configs("hierdiffuse", smoke_data)
    assert all(getattr(default, k) != v for k, v in PAPER_AS_PRINTED.items() if k != "session_recency")
    assert default.long_encoder_layers == 0 and paper.long_encoder_layers == -1
    model = HierDiffuse(paper)
    model(random_features(paper, 4))
    names = {w.path for w in model.weights}
    assert not any("gate" in n or "activation_unit" in n or "x0_norm" in n for n in names), names
    assert any("long_encoder/block_0" in n for n in names)  # f_L is a transformer, as printed.
    # A model saved before the SPEC 2b switches existed reloads as the model it was.
    saved = HierDiffuse(HierDiffuseConfig(**SMALL)).get_config()
    for key in PAPER_AS_PRINTED:
        if key != "normalize_x0":  # Saved configs have always held it.
            del saved["config"][key]
    restored = HierDiffuse.from_config(saved).config
    assert {k: getattr(restored, k) for k in PAPER_AS_PRINTED if k != "normalize_x0"} == {
        k: v for k, v in PAPER_AS_PRINTED.items() if k != "normalize_x0"}
    with pytest.raises(ConfigError, match="no packaged config"):
        training.resolve_configs("hierdiffuse", smoke_data, "hierdiffuse_papr")


def test_inference_is_deterministic_and_training_is_not():
    model = HierDiffuse(HierDiffuseConfig(**SMALL))
    x = random_features(model.config, 16)
    np.testing.assert_array_equal(model(x)["logit"].numpy(), model(x)["logit"].numpy())
    a = model.forward(x, training=True).logit.numpy()
    b = model.forward(x, training=True).logit.numpy()
    assert not np.allclose(a, b)  # Fresh diffusion noise and dropout each step.


ABLATIONS = [
    {"guidance": "cfg"}, {"guidance": "none"}, {"backbone": "transformer"},
    {"use_recon": False}, {"use_tr": False}, {"use_recon": False, "use_tr": False},
    {"sampler": "ddim", "sampler_steps": 5}, {"sampler": "ddpm"},
    {"direction": "short_to_long"}, {"direction": "long_to_none"}, {"direction": "short_to_none"},
    {"sgd_weights": "fixed"}, {"embed_combiner": "concat"}, {"head_cross_layers": 1},
    {"num_hash_buckets": 16}, {"readout": "mean"}, {"encoder_gate": False},
    {"normalize_x0": False}, {"head_short_cross": False}, {"head_on_clean": False},
    {"session_recency": True}, {"sampler": "none"}, {"long_chunk": 3}, {"long_encoder_layers": -1},
    {"next_behaviour_weight": 1.0}, {"readout_recency": True},
]


@pytest.mark.parametrize("switch", ABLATIONS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_every_switch_builds_trains_and_round_trips(switch, tmp_path):
    model = build_model("hierdiffuse", {**SMALL, **switch})
    x = random_features(model.config, 16)
    y = np.random.default_rng(0).integers(0, 2, 16).astype("float32")
    model(x)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)  # Tracing costs more here.
    logs = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history  # One eager step.
    assert np.isfinite(logs["loss"][0])
    if switch.get("next_behaviour_weight"):  # Its loss is logged and is in the training loss.
        assert logs["next"][0] > 0 and logs["loss"][0] > logs["bce"][0] + logs["next"][0]
    if not switch.get("use_tr", True):
        assert switch.get("use_recon", True) or logs["loss"][0] == pytest.approx(logs["bce"][0], rel=1e-5)
    # The TCC terms are logged where training computes them, and only there (no curve of zeros).
    tcc_on = switch.get("sampler") != "none" and (switch.get("use_recon", True) or switch.get("use_tr", True))
    assert {"recon", "tr", "tr_weight", "dt"} <= logs.keys() if tcc_on else not {"recon", "tr"} & logs.keys()
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.config == model.config
    np.testing.assert_allclose(restored(x)["ctr"].numpy(), model(x)["ctr"].numpy(), rtol=1e-6)


SHARED_USER_SWITCHES = [{}, {"readout": "mean"}, {"guidance": "cfg"}, {"direction": "short_to_long"},
                        {"direction": "long_to_none"}, {"sampler": "none"}, {"readout_recency": True}]


@pytest.mark.parametrize("switch", SHARED_USER_SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_one_user_side_broadcast_to_every_candidate_scores_as_the_tiled_rows(switch):
    """`rank`'s path: a 1-row user side against C targets equals C aligned rows."""
    model = build_model("hierdiffuse", {**SMALL, **switch})
    x = random_features(model.config, 12)
    model(x)
    rng = np.random.default_rng(1)  # The readouts' score layers start at zero: move every weight.
    model.set_weights([w + 0.1 * rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()])
    user = model.user_side({k: v[:1] for k, v in x.items()})
    tiled = type(user)(*(np.repeat(v, 12, axis=0) for v in user))
    for sampler in ("tcc", "ddim"):
        shared = model.score_candidates(user, x["target_item"], x["target_cat"], sampler=sampler, steps=3)
        rows = model.score_candidates(tiled, x["target_item"], x["target_cat"], sampler=sampler, steps=3)
        assert shared.shape == (12,)
        np.testing.assert_allclose(shared.numpy(), rows.numpy(), rtol=1e-5, atol=1e-6)
        assert np.ptp(rows.numpy()) > 1e-3  # The targets score differently, so the check has teeth.


def test_a_no_fusion_model_saved_with_the_tcc_logs_reloads(tmp_path, monkeypatch):
    """Before `logged` followed the config, every HierDiffuse tracked the TCC terms, so a
    `model.keras` of a no-fusion run holds four trackers that today's model lacks."""
    config = HierDiffuseConfig(**SMALL, sampler="none")
    with monkeypatch.context() as patch:
        patch.setattr(HierDiffuse, "logged", classmethod(lambda cls, config: cls.log_names))
        old = HierDiffuse(config)
    assert "recon" in old.log_trackers and "recon" not in HierDiffuse(config).log_trackers
    x = random_features(config, 8)
    old(x)
    old.compile(optimizer="adam")
    path = str(tmp_path / "old.keras")
    old.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored(x)["ctr"].numpy(), old(x)["ctr"].numpy(), rtol=1e-6)


def test_a_model_saved_before_loss_reduction_existed_reloads_with_the_summed_losses():
    saved = HierDiffuse(HierDiffuseConfig(**SMALL)).get_config()
    assert saved["config"]["loss_reduction"] == "mean"  # Today's default.
    del saved["config"]["loss_reduction"]  # What a model.keras from before the field holds.
    assert HierDiffuse.from_config(saved).config.loss_reduction == "sum"
    saved["config"]["loss_reduction"] = "mean"
    assert HierDiffuse.from_config(saved).config.loss_reduction == "mean"


def test_sampler_switch_changes_only_the_inference_path():
    tcc_model = HierDiffuse(HierDiffuseConfig(**SMALL))
    x = random_features(tcc_model.config, 8)
    tcc_model(x)
    ddim = HierDiffuse(HierDiffuseConfig(**SMALL, sampler="ddim", sampler_steps=5))
    ddim(x)
    assert len(ddim.weights) == len(tcc_model.weights)
    ddim.set_weights(tcc_model.get_weights())
    inputs = tcc_model.fusion_inputs(x)
    expected = tcc_model.fuse(*inputs, sampler="ddim", steps=5).numpy()
    np.testing.assert_allclose(ddim.fuse(*ddim.fusion_inputs(x)).numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match=r"`sampler` must be one of \['tcc', 'ddim', 'ddpm', 'none'\]"):
        tcc_model.fuse(*inputs, sampler="ddmp")


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"Unknown config key 'guidence'.*Did you mean 'guidance'"):
        HierDiffuseConfig.from_dict({"guidence": "sgd"})
    with pytest.raises(ConfigError, match=r"`direction` must be one of"):
        HierDiffuseConfig(direction="sideways")
    with pytest.raises(ConfigError, match=r"`t_star` must be in \[0, diffusion_steps=100\]"):
        HierDiffuseConfig(t_star=500)
    with pytest.raises(ConfigError, match=r"`encoder_heads` must divide embed_dim=32"):
        HierDiffuseConfig(encoder_heads=3)
    with pytest.raises(ConfigError, match=r"`time_embed_dim` must be >= 2"):
        HierDiffuseConfig(time_embed_dim=1)  # Was refused only at the model's first call.
    with pytest.raises(ConfigError, match=r"`dt_large` must be in \[dt_small=0.1, 1\]. Received: `dt_large=2.0`"):
        HierDiffuseConfig(dt_large=2.0)  # Was reported as a problem of dt_small.
    with pytest.raises(ConfigError, match=r"`lambda_end` must be >= 0"):
        HierDiffuseConfig(lambda_end=-5.0)
    with pytest.raises(ValueError, match="Unknown model 'gru4rec'"):
        build_model("gru4rec", {})


def test_a_model_is_evaluated_only_on_data_of_its_vocabulary_and_shape(smoke_data):
    values = smoke_data.model_values()
    training.check_sequence_shape(values, smoke_data, vocabulary=True)
    other = {**values, "num_items": values["num_items"] + 5}  # Another dataset of the same shape.
    training.check_sequence_shape(other, smoke_data)  # Training may size its own vocabulary.
    with pytest.raises(ConfigError, match=f"`num_items={other['num_items']}` does not match the dataset"):
        training.check_sequence_shape(other, smoke_data, vocabulary=True)  # `evaluate`'s check.


def test_config_file_blocks_layer_under_set_and_an_empty_block_is_allowed(smoke_data, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\ntrain:\n  epochs: 2\n  learning_rate: 0.002\n")
    _, model_config, train_config = training.resolve_configs(
        "hierdiffuse", smoke_data, str(path), overrides=["learning_rate=0.003", "schedule_steps=7"])
    assert train_config.epochs == 2 and train_config.learning_rate == 0.003
    assert model_config.schedule_steps == 7 and model_config.max_long == 12  # The dataset's M.
    path.write_text("model: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"`model` must be a mapping"):
        training.resolve_configs("hierdiffuse", smoke_data, str(path))


def test_hierdiffuse_s_narrower_widths_and_the_baselines_keep_theirs():
    from hierdiffuse_tf.config import DiffuRecConfig, DreamRecConfig

    sizes = dict(num_items=50, num_cats=8, max_long=6, num_sessions=2, session_len=3, embed_dim=8)
    model = HierDiffuse(HierDiffuseConfig(**sizes))
    model(random_features(model.config, 2))
    assert model.short_encoder.blocks[0]._self_attention_layer.num_heads == 1
    assert model.guided.denoiser.hidden[0].units == 64
    assert [dense.units for dense, _ in model.long_readout.unit.hidden] == [16]
    assert (DreamRecConfig(**sizes).encoder_heads, DreamRecConfig(**sizes).denoiser_units) == (2, 128)
    assert DiffuRecConfig(**sizes).encoder_heads == 2
    # A model saved with the earlier widths (every saved config holds both) rebuilds them.
    saved = HierDiffuse(HierDiffuseConfig(**sizes, encoder_heads=2, denoiser_units=128,
                                          readout_units=(36,))).get_config()
    restored = HierDiffuse.from_config(saved).config
    assert (restored.encoder_heads, restored.denoiser_units, restored.readout_units) == (2, 128, (36,))


def test_the_schedules_cover_the_steps_the_run_takes(smoke_data):
    # Training leaves out each epoch's short last batch (drop_remainder): the schedule counts full ones.
    size = smoke_data.num_examples("train")
    _, model_config, train_config = training.resolve_configs("hierdiffuse", smoke_data, overrides=[
        "batch_size=100", "epochs=3"])
    assert train_config.drop_remainder and model_config.skip_empty_sessions
    assert model_config.schedule_steps == size // 100 * 3
    _, legacy, _ = training.resolve_configs("hierdiffuse", smoke_data, overrides=[
        "batch_size=100", "epochs=3", "drop_remainder=false"])
    assert legacy.schedule_steps == -(-size // 100) * 3
    assert size % 100  # Otherwise the two would agree.
    # A run recorded before the fields existed trained every batch, over every session.
    assert not TrainConfig.from_saved({"epochs": 3}).drop_remainder
    assert not HierDiffuseConfig.from_saved({}).skip_empty_sessions


def fit_counting_traces(model, x, y) -> int:
    """One epoch of `fit` on `x`, `y`; returns how many times the training step was traced."""
    traces = []
    train_step = model.train_step
    model.train_step = lambda data: traces.append(1) or train_step(data)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    del model.train_step
    return len(traces)


@pytest.mark.parametrize("name", ["din", "dien", "hierdiffuse"])
def test_the_first_fit_traces_the_step_once_and_a_loaded_model_resumes(name, tmp_path):
    # A training step that creates Adam's slots is traced twice; built before it, once.
    model = build_model(name, SMALL, shared=True)  # The fields of SMALL that the model has.
    model.compile(optimizer="adam")  # As in a notebook: the model was never called.
    x, y = random_features(model.config, 16), np.ones(16, "float32")
    assert fit_counting_traces(model, x, y) == 1 and model.optimizer.built
    # Keras compiles a loaded model, with Adam's state, only if `compile` is its own.
    model.save(tmp_path / "model.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert not [w for w in caught if "compile()" in str(w.message)]
    assert int(loaded.optimizer.iterations) == 1
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert fit_counting_traces(loaded, x, y) == 1 and int(loaded.optimizer.iterations) == 2


def test_cli_reports_bad_input_as_one_line_errors(data_dir, smoke_builder, tmp_path, capsys):
    run_without_model = tmp_path / "committed_run"  # What a checkout holds of a run: no model.keras.
    run_without_model.mkdir()
    (run_without_model / "config.json").write_text("{}")
    cut_short = tmp_path / "tuning.json"  # A file cut short: the error names it, no traceback.
    cut_short.write_text('{"hierdiffuse": {"overr')
    cases = [
        (["train", "--dataset", "imagenet", "--out", str(tmp_path)], "Unknown dataset 'imagenet'"),
        (["train", "--dataset", SMOKE, "--data-dir", data_dir, "--model", "gru4rec", "--out", str(tmp_path)],
         "Unknown model 'gru4rec'"),
        (["train", "--dataset", SMOKE, "--data-dir", data_dir, "--set", "guidence=cfg", "--out", str(tmp_path)],
         "Unknown config key 'guidence'"),
        (["train", "--dataset", SMOKE, "--data-dir", data_dir, "--set", "max_long=7", "--out", str(tmp_path)],
         "`max_long=7` does not match the dataset, which has max_long=12"),
        (["prepare", "--dataset", "movielens_100k_ctr", "--data-dir", str(tmp_path),
          "--manual-dir", str(tmp_path / "missing")], "does not exist"),
        (["evaluate", "--dataset", SMOKE, "--data-dir", data_dir, "--model-dir", str(tmp_path)],
         "No model.keras"),
        (["evaluate", "--dataset", SMOKE, "--data-dir", data_dir, "--model-dir", str(run_without_model)],
         f"hierdiffuse restore --model-dir {run_without_model}"),
        (["restore", "--data-dir", data_dir, "--model-dir", str(tmp_path)], "config.json"),
        (["experiment", "table1", "--dataset", SMOKE, "--data-dir", data_dir, "--tuned", str(cut_short),
          "--out", str(tmp_path)], f"{cut_short}: not valid JSON"),
        (["score", "--dataset", SMOKE, "--limit", "0"], "argument --limit: must be an integer >= 1, not '0'"),
        (["train", "--dataset", SMOKE, "--epochs", "-2"], "argument --epochs: must be an integer >= 1"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, (argv, err)


@pytest.mark.slow
def test_lambda_and_dt_read_the_optimizer_step():
    model = HierDiffuse(HierDiffuseConfig(**SMALL, schedule_steps=10))
    x = random_features(model.config, 8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ds = tf.data.Dataset.from_tensors((x, np.ones(8, "float32"))).repeat(10)
    model.fit(ds, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 10
    out = model.forward(x, training=True)
    assert float(out.logs["tr_weight"]) == pytest.approx(float(tcc.lambda_schedule(10, 10)))
    assert float(out.logs["tr_weight"]) == pytest.approx(0.2)
    assert float(out.logs["dt"]) >= 0.1 * 20  # Past the switch: medium spans.
