"""`hierdiffuse bench inference` on a tiny model: every path and ratio is reported."""

import json

from hierdiffuse_tf import bench, cli


def test_bench_inference_reports_every_path_and_ratio(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "inference", "--batch-size", "16", "--repeats", "2", "--json", str(out),
                     "--set", "embed_dim=8", "--set", "encoder_ffn_dim=8", "--set", "denoiser_units=8",
                     "--set", "time_embed_dim=8", "--set", "max_long=8", "--set", "diffusion_steps=8"]) == 0
    result = json.loads(out.read_text())
    assert set(bench.TARGETS) == set(result["ratios"])
    assert {"tcc", "ddim_10", "ddpm_all", "no_fusion", "fusion_tcc", "savedmodel", "din",
            "avg_pool_dnn", "rank_1x256", "batch_256_rows"} <= set(result["batches_per_sec"])
    assert all(v > 0 for v in result["batches_per_sec"].values())
    # 10 DDPM steps against one: even on a noisy machine the one-step fusion is faster.
    assert result["ratios"]["fusion_tcc_over_ddpm"] > 2
    assert (tmp_path / "bench.md").read_text().startswith("| ratio |")
