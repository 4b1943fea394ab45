"""`hierdiffuse bench inference` on a tiny model: every path and ratio is reported."""

import json
import re

import pytest

from conftest import SMOKE
from hierdiffuse_tf import cli
from hierdiffuse_tf.bench import data, inference, portable, timing


@pytest.mark.slow
def test_bench_inference_reports_every_path_and_ratio(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "inference", "--batch-size", "16", "--repeats", "2", "--json", str(out),
                     "--set", "embed_dim=8", "--set", "encoder_ffn_dim=8", "--set", "denoiser_units=8",
                     "--set", "time_embed_dim=8", "--set", "max_long=8", "--set", "diffusion_steps=20"]) == 0
    result = json.loads(out.read_text())
    assert set(inference.TARGETS) | {"fusion_tcc_over_ddpm_from_t_star"} == set(result["ratios"])
    assert {f"{p}_xla" for p in ("fusion_tcc", "fusion_ddim_10", "fusion_ddpm_100")} <= set(
        result["batches_per_sec"])
    assert {"tcc", "ddim_10", "ddpm_all", "no_fusion", "fusion_tcc", "savedmodel", "savedmodel_xla", "din",
            "avg_pool_dnn", "rank_1x256", "batch_256_rows"} <= set(result["batches_per_sec"])
    assert all(v > 0 for v in result["batches_per_sec"].values())
    # Speed claims belong to the benchmark's own runs (results/), not to a timed test on a
    # shared machine; here every ratio must just be a real measurement.
    assert all(0 < v < float("inf") for v in result["ratios"].values())
    assert (tmp_path / "bench.md").read_text().startswith("| ratio |")
    diag = result["diagnostics"]
    assert diag["call_floor_ms"] > 0 and diag["fusion_tcc_over_ddim_net_of_call"] > 0
    assert diag["savedmodel_xla_over_savedmodel"] > 0
    ops = diag["fusion_graph_ops"]
    assert ops["fusion_tcc"] < ops["fusion_ddim_10"] < ops["fusion_ddpm_100"]
    assert "Diagnostic:" in (tmp_path / "bench.md").read_text()


TINY = ["--set", "embed_dim=8", "--set", "encoder_ffn_dim=8", "--set", "denoiser_units=8",
        "--set", "time_embed_dim=8", "--set", "max_long=8"]


@pytest.mark.slow
def test_bench_data_compares_the_pipeline_with_training(smoke_builder, data_dir, tmp_path):
    out = tmp_path / "data.json"
    assert cli.main(["bench", "data", "--dataset", SMOKE, "--data-dir", data_dir,
                     "--batch-size", "64", "--steps", "3", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["data_examples_per_sec"] > 0 and result["train_examples_per_sec"] > 0
    assert result["ratios"]["data_over_train"] == pytest.approx(
        result["data_examples_per_sec"] / result["train_examples_per_sec"])
    assert result["ratios"]["cached_over_train"] == pytest.approx(
        result["cached_examples_per_sec"] / result["train_examples_per_sec"])
    assert "| later epochs (cached) |" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_bench_beam_times_the_taobao_builder_per_worker_count(tmp_path):
    written = []  # After every build, so an out-of-memory kill keeps the finished ones.
    result = data.bench_beam(rows=600, workers=(1,), workdir=str(tmp_path), on_run=written.append)
    (run,) = result["runs"]
    assert written == [result]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", result["git_commit"])  # `-dirty`: uncommitted code.
    assert run["workers"] == 1 and run["examples"] > 0 and run["rows_per_sec"] > 0
    # Each build runs in its own process, so its peak memory is its own.
    assert run["peak_rss_mb"]["runner"] > 0 and run["peak_rss_mb"]["largest_worker"] > 0
    assert "| 1 |" in data.markdown_beam(result)


def test_bench_beam_records_a_killed_build_instead_of_dying(tmp_path, monkeypatch):
    def oom(module, call, show_progress=False):
        raise timing.IsolatedRunError(-9, "")

    monkeypatch.setattr(data, "run_isolated", oom)
    result = data.bench_beam(rows=50, workers=(1, 2), workdir=str(tmp_path))
    assert [r["complete"] for r in result["runs"]] == [False, False]
    assert "signal 9" in result["runs"][0]["error"] and result["ratios"] == {}
    assert "no: The benchmark process was killed by signal 9" in data.markdown_beam(result)


# Runs in a fresh interpreter where TensorFlow cannot be imported, as on a JAX-only GPU machine.
WITHOUT_TENSORFLOW = """
import importlib.util, json, sys
for name in ("tensorflow", "tensorflow_datasets"):
    sys.modules[name] = None
find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name in ("tensorflow", "tensorflow_datasets") else find_spec(name, *a)
from hierdiffuse_tf.bench import portable, timing
tiny = dict(embed_dim=8, encoder_ffn_dim=8, denoiser_units=8, time_embed_dim=8, max_long=8, diffusion_steps=20)
result = portable.bench_portable((8,), repeats=1, model_values=tiny)  # Each size compiles anew.
timing.write(result, sys.argv[1], portable.markdown)
"""


@pytest.mark.slow
def test_bench_portable_times_the_model_math_without_tensorflow(tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "portable.json"
    env = {**os.environ, "KERAS_BACKEND": "jax"}  # What the GPU machine runs.
    subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, str(out)], check=True, env=env, timeout=300)
    result = json.loads(out.read_text())
    assert result["backend"] == "jax" and set(result["results"]) == {"8"}
    for row in result["results"].values():
        assert set(row["ratios"]) == set(portable.TARGETS)
        assert all(0 < v < float("inf") for v in row["ratios"].values())
        assert {"tcc", "ddim_10", "ddpm_all", "no_fusion", "fusion_tcc", "fusion_ddim_10", "fusion_ddpm_100",
                "din", "avg_pool_dnn", "call_floor"} == set(row["batches_per_sec"])
        assert row["diagnostics"]["call_floor_ms"] > 0
        assert row["deterministic"] == {"tcc": True, "ddim_10": True, "ddpm_all": True, "no_fusion": True}
    assert "batch 8" in (tmp_path / "portable.md").read_text()


def test_bench_fusion_reports_the_stage_ratios_at_each_batch_size(tmp_path):
    out = tmp_path / "fusion.json"
    assert cli.main(["bench", "fusion", "--batch-sizes", "8,16", "--repeats", "5", "--json", str(out),
                     *TINY, "--set", "diffusion_steps=20"]) == 0
    result = json.loads(out.read_text())
    assert sorted(result["results"], key=int) == ["8", "16"]
    for row in result["results"].values():
        assert set(row["ratios"]) == {"fusion_tcc_over_ddim", "fusion_tcc_over_ddpm_from_t_star"}
        # A ratio of two timings, not its size: at these tiny shapes both paths compile under XLA
        # into one call near the per-call floor, and a loaded CI machine put TCC at 0.97x DDPM once.
        assert all(0 < value < float("inf") for value in row["ratios"].values())
    assert "| 16 |" in (tmp_path / "fusion.md").read_text()
