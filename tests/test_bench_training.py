"""The training benchmarks (`bench train | profile | xla`): each starts training processes, so they
live in their own file, which pytest-xdist's `loadfile` gives a worker of its own."""

import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import SMOKE
from hierdiffuse_tf import cli, export
from hierdiffuse_tf.bench import timing, training
from hierdiffuse_tf.bench.portable import DEFAULT_SHAPE
from hierdiffuse_tf.config import HierDiffuseConfig
from hierdiffuse_tf.models import build_model
from hierdiffuse_tf.models.base import example_features
from test_bench import TINY


@pytest.fixture
def in_process(monkeypatch):
    """`run_isolated`'s calls run in this process, as its JSON would return them: each of its
    processes would start TensorFlow anew (5-7 s). `bench train`'s test keeps the processes."""
    def run_here(module, call):
        assert module == "training", module
        return json.loads(json.dumps(eval(call, vars(training))))  # The commands' own calls.

    monkeypatch.setattr(training, "run_isolated", run_here)


@pytest.mark.slow
def test_bench_train_reports_each_model_with_peak_memory(tmp_path):
    out = tmp_path / "train.json"
    assert cli.main(["bench", "train", "--batch-size", "32", "--steps", "3", "--json", str(out),
                     "--models", "hierdiffuse,din,diffurec", "--repeats", "1", *TINY]) == 0
    result = json.loads(out.read_text())
    assert [r["model"] for r in result["rows"]] == ["hierdiffuse", "din", "diffurec"]
    assert all(r["examples_per_sec"] > 0 and r["peak_rss_mb"] > 100 for r in result["rows"])
    ratios = result["ratios"]
    assert set(ratios) == {"din_over_hierdiffuse", "diffurec_over_hierdiffuse", "hierdiffuse_over_din",
                           "diffurec_time_over_hierdiffuse", "hierdiffuse_over_din_step",
                           "diffurec_time_over_hierdiffuse_step"}
    by = {r["model"]: r for r in result["rows"]}
    assert all(r["step_ms"] > 0 and r["step_cpu_ms"] > 0 for r in result["rows"])
    assert ratios["hierdiffuse_over_din_step"] == pytest.approx(by["din"]["step_ms"] / by["hierdiffuse"]["step_ms"])
    assert ratios["hierdiffuse_over_din"] == pytest.approx(1 / ratios["din_over_hierdiffuse"])
    assert ratios["diffurec_time_over_hierdiffuse"] == pytest.approx(1 / ratios["diffurec_over_hierdiffuse"])
    # Each model as `train` compiles it: here a plain graph, which the suite asks for (conftest).
    assert [r["xla"] for r in result["rows"]] == [False, False, False]
    assert all(r["rounds"] == 3 for r in result["rows"])  # The fastest of 3 timed fits after the warm-up.
    assert "diffurec's time per example over HierDiffuse's" in out.with_suffix(".md").read_text()
    assert result["repeats"] == 1


@pytest.mark.slow
def test_bench_profile_reports_each_part_of_a_training_step(tmp_path, in_process):
    tiny = dict(embed_dim=8, encoder_ffn_dim=8, denoiser_units=8, time_embed_dim=8, max_long=8,
                diffusion_steps=20)
    # One of the parts (each variant is timed on its own, about 10 s here); every part's
    # change is checked to build below.
    parts = training.PROFILE_PARTS[:1]
    result = training.profile_train_step(batch_size=16, steps=2, repeats=1, model_values=tiny, parts=parts)
    assert result["repeats"] == 1
    assert [p["part"] for p in result["parts"]] == [name for name, _ in parts]
    assert result["step_ms"]["full"] > 0 and result["step_ms"]["din (for scale)"] > 0
    for part in result["parts"]:
        full, without = result["step_ms"]["full"], result["step_ms"][part["part"]]
        assert part["ms"] == pytest.approx(full - without)
    timing.write(result, str(tmp_path / "profile.json"), training.markdown_profile)
    assert "share of the step" in (tmp_path / "profile.md").read_text()
    for name, change in training.PROFILE_PARTS:  # Every part is a config the model builds and runs.
        model = build_model("hierdiffuse", {**DEFAULT_SHAPE, **tiny, **change}, shared=True)
        x = {k: tf.constant(v) for k, v in export.example_request(model.config, 4).items()}
        assert tuple(model(x, training=True)["ctr"].shape) == (4,), name


@pytest.mark.slow
def test_bench_xla_times_both_compiles_of_each_model(tmp_path, in_process):
    out = tmp_path / "xla.json"
    assert cli.main(["bench", "xla", "--models", "din", "--batch-size", "16", "--steps", "2",
                     "--repeats", "1", "--json", str(out), *TINY]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in rows] == ["din"]
    assert all(r[k] > 0 for r in rows for k in ("train_graph", "train_xla", "score_graph", "score_xla"))
    assert rows[0]["jit_train"] and "| din |" in (tmp_path / "xla.md").read_text()


@pytest.mark.slow
def test_bench_epoch_estimates_each_models_epoch_on_a_prepared_split(smoke_builder, data_dir, tmp_path,
                                                                     in_process):
    out = tmp_path / "epoch.json"
    assert cli.main(["bench", "epoch", "--dataset", SMOKE, "--data-dir", data_dir,
                     "--models", "hierdiffuse,dreamrec", "--steps", "3", "--json", str(out),
                     "--set", "batch_size=64", *TINY[:-2]]) == 0
    result = json.loads(out.read_text())
    by = {r["model"]: r for r in result["rows"]}
    assert list(by) == ["hierdiffuse", "dreamrec"]
    for row in by.values():
        # A train field reaches every model; a model field only the models that have it.
        assert row["batch_size"] == 64 and row["steps"] == 3
        assert row["step_ms"] > 0 and row["validation_seconds"] > 0
        assert row["epoch_seconds"] == pytest.approx(
            row["steps_per_epoch"] * row["step_ms"] / 1000 + row["validation_seconds"])
    assert "denoiser_units=8" in by["hierdiffuse"]["overrides"]
    assert result["ratios"] == {"dreamrec_epoch_over_hierdiffuse": pytest.approx(
        by["dreamrec"]["epoch_seconds"] / by["hierdiffuse"]["epoch_seconds"])}
    assert "dreamrec's time per epoch over HierDiffuse's" in out.with_suffix(".md").read_text()


def test_the_benchmark_batch_has_real_data_s_share_of_empty_sessions():
    # HierDiffuse's step costs less the more sessions are empty, so the batch is timed with
    # the training splits' share of sessions that hold behaviours, not with every slot full.
    config = HierDiffuseConfig(num_items=50, num_cats=5)
    x = example_features(config, 2000, session_share=training.TRAINING_SESSION_SHARE)
    full = example_features(config, 2000)
    held = (x["short_items"] > 0).any(-1)
    assert abs(held.mean() - training.TRAINING_SESSION_SHARE) < 0.03 and (full["short_items"] > 0).any(-1).all()
    for name in ("short_items", "short_cats", "short_popular"):  # A session is empty in every feature.
        assert not x[name][~held].any()
        np.testing.assert_array_equal(x[name][held], full[name][held])
    np.testing.assert_array_equal(x["long_items"], full["long_items"])


def test_paired_step_times_each_model_in_alternating_rounds(monkeypatch):
    import keras

    sizes = dict(num_items=50, num_cats=5, max_long=6, num_sessions=2, session_len=3, embed_dim=8)
    x = {k: tf.constant(v) for k, v in example_features(HierDiffuseConfig(**sizes), 8).items()}
    batch = (x, tf.constant([0.0, 1.0] * 4))
    models = {}
    for name in ("first", "second"):
        models[name] = build_model("din", sizes)
        models[name].compile(optimizer=keras.optimizers.Adam(1e-3))
    order = []
    real = training.direct_step_ms
    monkeypatch.setattr(training, "direct_step_ms",
                        lambda step, iterator, steps: order.append(step) or real(step, iterator, steps))
    result = training.paired_step_ms(models, batch, rounds=3, steps=2)
    assert list(result) == ["first", "second"]
    assert all(0 < best <= median for best, median in result.values())
    assert order == [models["first"].train_function, models["second"].train_function] * 3  # Round by round.


def test_paired_step_variants_builds_each_spec_and_applies_its_patches(smoke_data, monkeypatch):
    batch = next(iter(smoke_data.batches("train", 16, shuffle=False)))
    patched = []
    timed = {}
    monkeypatch.setattr(training, "paired_step_ms",
                        lambda models, batch, rounds, steps: timed.update(models) or {"rounds": rounds})
    specs = ["din:embed_dim=8", "din:embed_dim=8:marked=1:learning_rate=0.01"]
    assert training.paired_step_variants(smoke_data, specs, batch, rounds=2,
                                         patches={"marked": patched.append}) == {"rounds": 2}
    assert list(timed) == specs
    assert patched == [timed[specs[1]]]  # Only the marked variant, built before it is compiled.
    assert all(model.built and model.optimizer is not None for model in timed.values())
    assert float(timed[specs[1]].optimizer.learning_rate) == pytest.approx(0.01)
    assert timed[specs[0]].config.embed_dim == 8
    with pytest.raises(Exception, match="unmarked"):  # Only a patch's own key is taken out.
        training.paired_step_variants(smoke_data, ["din:unmarked=1"], batch, rounds=1,
                                      patches={"marked": patched.append})
