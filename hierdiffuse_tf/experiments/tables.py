"""The paper's tables, regenerated: Table 1, Table 2 and the robustness sweep.

`table1` and `table2` time inference speed (batches/s) for every row in the
same process, with one shared batch size, interleaving the models so that
machine noise hits them alike (`bench.timing`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

import numpy as np

from hierdiffuse_tf import training
from hierdiffuse_tf.config import PAPER_AS_PRINTED, ConfigError
from hierdiffuse_tf.bench.timing import time_batches
from hierdiffuse_tf.datasets import pipeline
from hierdiffuse_tf.experiments.report import (check_table_name, learning_curves, plot_learning_curves,
                                               plot_robustness, summary, table_meta, write_table)
from hierdiffuse_tf.experiments.runs import best_epochs, restore_models, run_dir_of, run_key, train_runs
from hierdiffuse_tf.experiments.tuning import tuned_overrides
from hierdiffuse_tf.models import MODELS
from hierdiffuse_tf.utils import read_json, write_json


TABLE1_MODELS = tuple(MODELS)  # avg_pool_dnn, din, dien, diffurec, dreamrec, hierdiffuse.


# The paper's Table 1 (AUC), for the side-by-side view in docs/experiments.md.
PAPER_TABLE1 = {
    "avg_pool_dnn": (0.7689, 0.8539, 0.7512), "din": (0.7862, 0.8995, 0.7564),
    "dien": (0.8377, 0.9222, 0.7611), "diffurec": (0.8395, 0.9258, 0.7607),
    "dreamrec": (0.8421, 0.9286, 0.7619), "hierdiffuse": (0.8472, 0.9327, 0.7680),
}


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of Table 2: a training config plus inference-only changes."""

    group: str
    variant: str
    train: tuple = ()  # `--set` overrides that change the trained model.
    infer: tuple = ()  # Inference-only changes of the same trained model (the sampler).
    paper_auc: float | None = None
    paper_infer: float | None = None


TABLE2_ROWS = (
    Row("a", "w/ CFG", ("guidance=cfg",), paper_auc=0.7663, paper_infer=16.9),
    Row("a", "w/ SGD (ours)", paper_auc=0.7680, paper_infer=16.1),
    Row("b", "w/ Transformer", ("backbone=transformer",), paper_auc=0.7684, paper_infer=14.8),
    Row("b", "MLP (ours)", paper_auc=0.7680, paper_infer=16.1),
    Row("c", "w/o L_recon", ("use_recon=false",), paper_auc=0.7629, paper_infer=16.2),
    Row("c", "w/o L_TR", ("use_tr=false",), paper_auc=0.7669, paper_infer=16.4),
    Row("c", "ours", paper_auc=0.7680, paper_infer=16.1),
    Row("d", "w/ DDPM", infer=(("sampler", "ddpm"),), paper_auc=0.7682, paper_infer=9.98),
    Row("d", "w/ DDIM", infer=(("sampler", "ddim"),), paper_auc=0.7681, paper_infer=13.01),
    Row("d", "TCC (ours)", paper_auc=0.7680, paper_infer=16.1),
    Row("e", "+Short->none", ("direction=short_to_none",), paper_auc=0.7640, paper_infer=15.7),
    Row("e", "+Long->none", ("direction=long_to_none",), paper_auc=0.7644, paper_infer=15.5),
    Row("e", "+Short->Long", ("direction=short_to_long",), paper_auc=0.7647, paper_infer=16.0),
    Row("e", "+Long->Short (ours)", paper_auc=0.7680, paper_infer=16.1),
    # (f) is ours: no fusion stage at all (what the diffusion adds), SPEC 2b's changes to the
    # paper's model all turned off at once (the model as the paper prints it), and each
    # turned off on its own. (Rows train in this order: the two headline rows first.)
    Row("f", "no fusion stage (h_fusion = x0)", ("sampler=none",)),
    Row("f", "paper as printed (SPEC 2)",
        tuple(f"{k}={str(v).lower()}" for k, v in PAPER_AS_PRINTED.items() if k != "session_recency")),
    Row("f", "w/ f_L transformer", ("long_encoder_layers=-1",)),
    Row("f", "w/o target readout", ("readout=mean", "readout_recency=false")),  # Mean: no scores to bias.
    Row("f", "w/o readout recency", ("readout_recency=false",)),
    Row("f", "w/o encoder gate", ("encoder_gate=false",)),
    Row("f", "w/o x0 norm", ("normalize_x0=false",)),
    Row("f", "w/o h_S * e_t in the head", ("head_short_cross=false",)),
    Row("f", "head reads a noisy x_t*", ("head_on_clean=false",)),
    Row("f", "ours (SPEC 2b)"),
)


def select_rows(spec: str, rows: Sequence[Row] = TABLE2_ROWS) -> tuple[Row, ...]:
    """The rows named by `spec`, in table order: comma-separated groups (`"d,e"`),
    or one group's rows whose variant contains some words (`"f:no fusion"`), with the
    group's own reference row (the model unchanged), which they are read against.

    Raises:
        ConfigError: naming an unknown group, or words that no row of the group has.
    """
    groups = sorted({r.group for r in rows})
    chosen = set()
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        group, _, words = (v.strip() for v in item.partition(":"))
        members = [r for r in rows if r.group == group]
        if not members:
            raise ConfigError(f"--groups: unknown group {group!r} in {item!r}; Table 2 has {', '.join(groups)}")
        if words:
            matched = [r for r in members if words.lower() in r.variant.lower()]
            if not matched:
                raise ConfigError(f"--groups: no row of group {group} has {words!r} in its name; its rows: "
                                  + "; ".join(r.variant for r in members))
            members = matched + [r for r in members if not (r.train or r.infer)]
        chosen.update(members)
    return tuple(r for r in rows if r in chosen)


NOISE_CONFIGS = {0.0: "noise_0", 0.1: "noise_10", 0.2: "noise_20", 0.3: "noise_30", 0.5: "noise_50"}


ROBUSTNESS_MODELS = ("hierdiffuse", "din", "avg_pool_dnn")


def with_inference_changes(model, changes: Sequence[tuple[str, object]]):
    """The same weights under a config with inference-only changes (e.g. the sampler)."""
    if not changes:
        return model
    clone = type(model)(model.config.replace(**dict(changes)))
    clone(clone.example_inputs(), training=False)
    clone.set_weights(model.get_weights())
    return clone


def time_inference(models: dict, batches: list, repeats: int = 5, either_compile: Sequence[str] = ()) -> dict:
    """Median batches/s of each model's compiled scorer over the same batches, interleaved.

    A model named in `either_compile` is also timed as a plain graph and keeps the faster of
    the two, as `bench inference` times each sampler: XLA speeds up the one-step path but
    can slow down a sampler unrolled over many steps.
    """
    scorers = {name: training.compiled_scorer(m, reduce_retracing=True) for name, m in models.items()}
    plain = {f"{name} (plain graph)": training.compiled_scorer(models[name], reduce_retracing=True,
                                                              jit_compile=False) for name in either_compile}
    speed = time_batches({**scorers, **plain}, batches, repeats)
    return {name: max(speed[name], speed.get(f"{name} (plain graph)", 0.0)) for name in models}


def timing_model(run_dir: str, batch) -> tuple:
    """`(model, source)`: the run's saved model, or, where git kept none, the same
    architecture with fresh weights (source "re-timed, fresh weights").

    A forward pass costs the same whatever the weights hold, so a model built
    from the run's `config.json` (read as a saved config: legacy defaults for
    fields it predates, retired fields dropped) times as the trained one would;
    it is called once on `batch` to build its variables.
    """
    if os.path.exists(os.path.join(run_dir, "model.keras")):
        return training.load_run_model(run_dir), "re-timed"
    recorded = read_json(os.path.join(run_dir, "config.json"), required=True)
    model = MODELS[recorded["model"]].from_config({"config": recorded["model_config"]})  # As a reload.
    model(batch, training=False)
    return model, "re-timed, fresh weights"


def table_speeds(first_runs: dict, data: pipeline.PreparedDataset, batch_size: int,
                 count: int) -> tuple[dict, dict]:
    """Inference speed per row from each row's seed-0 run: `(batches/s, source)`.

    Every row is timed in this process, interleaved over the same batches
    (`time_inference`); a row whose `model.keras` git did not keep is timed on
    its architecture with fresh weights (`timing_model`), and its source says so.
    """
    batches = timing_batches(data, batch_size, count)
    timed = {k: timing_model(m["run_dir"], batches[0]) for k, m in first_runs.items()}
    return (time_inference({k: model for k, (model, _) in timed.items()}, batches),
            {k: source for k, (_, source) in timed.items()})


def timing_batches(data: pipeline.PreparedDataset, batch_size: int, count: int) -> list:
    ds = data.batches("test", batch_size, drop_remainder=True).take(count)
    batches = [features for features, _ in ds]
    if not batches:
        raise pipeline.DatasetError(f"The test split of {data.name} has fewer than {batch_size} examples")
    return batches


def inference_metrics_path(run_dir: str, changes: Sequence[tuple[str, object]]) -> str:
    """Where a run's test metrics under inference-only `changes` are kept, e.g.
    `metrics_sampler=ddpm.json`: git keeps it, so a later checkout, which has no
    `model.keras`, still has the row's AUC."""
    return os.path.join(run_dir, "metrics_" + "__".join(f"{k}={v}" for k, v in changes) + ".json")


def auc_of(run_metrics: list, data: pipeline.PreparedDataset | None = None, changes=()) -> list[float]:
    """Per-seed test AUCs; with inference changes, each seed's model is re-evaluated
    once, and the metrics are written beside the run's (`inference_metrics_path`)."""
    if not changes:
        return [m["auc"] for m in run_metrics]
    aucs = []
    for m in run_metrics:
        path = inference_metrics_path(m["run_dir"], changes)
        kept = _kept_for(path, m)
        if kept is None:
            base = training.load_run_model(m["run_dir"])
            kept = {**training.evaluate(with_inference_changes(base, changes), data.batches("test", 1024),
                                        verbose=0),
                    "split": "test", "inference_changes": dict(changes),
                    "evaluated_from": os.path.join(m["run_dir"], "model.keras"),
                    "model_auc": m["auc"]}  # Which trained model it was.
            write_json(path, kept, indent=2)
        aucs.append(kept["auc"])
    return aucs


def _kept_for(path: str, run_metrics: dict) -> dict | None:
    """The metrics kept at `path` if they are of the model that the run's `metrics.json`
    describes (same test AUC), not of an earlier training of the same run directory."""
    kept = read_json(path)
    return kept if kept is not None and kept.get("model_auc") == run_metrics["auc"] else None


def seed_counts(models: Sequence[str], seeds: int, seeds_for: Mapping[str, int] | None = None) -> dict:
    """Each model's seed count: `seeds`, or its own in `seeds_for` (each a model of the table, >= 1)."""
    seeds_for = dict(seeds_for or {})
    if set(seeds_for) - set(models):
        raise ConfigError(f"--seeds-for names models that the table does not train: "
                          f"{sorted(set(seeds_for) - set(models))}; it trains {list(models)}")
    if any(n < 1 for n in [seeds, *seeds_for.values()]):
        raise ConfigError(f"Every model needs at least one seed. Received: seeds={seeds}, seeds_for={seeds_for}")
    return {m: seeds_for.get(m, seeds) for m in models}


def table1_jobs(tuned: dict | None, models: Sequence[str], common: Sequence[str]) -> list[tuple[str, tuple]]:
    """Table 1's `(model, overrides)` runs: each model with its tuned overrides."""
    per_model = tuned_overrides(tuned, models, common)
    return [(m, per_model[m]) for m in models]


def table2_jobs(tuned: dict | None, rows_spec: Sequence[Row], common: Sequence[str]) -> list[tuple[str, tuple]]:
    """Table 2's distinct trained variants: HierDiffuse with its tuned overrides and each row's own
    (inference-only rows share the full model's runs)."""
    base_overrides = tuned_overrides(tuned, ["hierdiffuse"], common)["hierdiffuse"]
    return list(dict.fromkeys(("hierdiffuse", base_overrides + r.train) for r in rows_spec))


def table1(dataset: str | pipeline.PreparedDataset,
           out: str, seeds: int = 3, epochs: int | None = None,
           data_dir: str | None = None, models: Sequence[str] = TABLE1_MODELS,
           batch_size: int = 256, timing_batches_count: int = 20, common: Sequence[str] = (),
           command: str = "", tuned: dict | None = None, name: str = "table1",
           seeds_for: Mapping[str, int] | None = None) -> list[dict]:
    """Trains every Table 1 model with `seeds` seeds; writes `name`.{json,md,csv} and `name`_curves.png.

    `seeds_for` gives a model another count (say `{"diffurec": 1}` where a model's
    cost allows fewer), which the table's caption names.

    `tuned` (from `load_tuned`) adds each model's tuned overrides to its runs;
    a winner's seed-0 tuning run (`out/tuning/runs/`) is evaluated on test
    instead of trained again. Another `name` keeps a second table beside the
    first under one `out`, drawn from the same runs (say, the defaults' table
    beside the tuned one).
    """
    check_table_name(name)
    counts = seed_counts(models, seeds, seeds_for)
    data = pipeline.open_dataset(dataset, data_dir)
    per_model = dict(table1_jobs(tuned, models, common))
    keys = {m: run_key(m, per_model[m]) for m in models}
    runs = train_runs(out, data, list(per_model.items()), counts, epochs, data_dir, common,
                      reuse_from=os.path.join(out, "tuning"))
    speed, speed_source = table_speeds({m: runs[keys[m]][0] for m in models}, data, batch_size,
                                       timing_batches_count)
    rows = []
    for m in models:
        metrics = runs[keys[m]]
        paper = PAPER_TABLE1.get(m, (None, None, None))
        rows.append({"model": m, **summary([r["auc"] for r in metrics], [r["logloss"] for r in metrics]),
                     "gauc_mean": float(np.mean([r["gauc"] for r in metrics])),
                     "batches_per_sec": speed[m], "speed_source": speed_source[m],
                     "paper_amazon": paper[0], "paper_taobao": paper[1],
                     "seeds": list(range(counts[m])), "tuned_overrides": list(per_model[m]),
                     "best_epochs": best_epochs(metrics),
                     "config": read_json(os.path.join(metrics[0]["run_dir"], "config.json"), required=True)})
    columns = [("model", "model", "{}"), ("auc_pm", "AUC (mean ± std)", "{}"),
               ("logloss_mean", "log loss", "{:.4f}"), ("gauc_mean", "GAUC", "{:.4f}"),
               ("best_epochs", "best val. epoch / epochs run (per seed)", "{}"),
               ("batches_per_sec", "infer. batches/s", "{:.1f}"), ("speed_source", "speed", "{}"),
               ("paper_amazon", "paper: Amazon", "{:.4f}"), ("paper_taobao", "paper: Taobao", "{:.4f}")]
    curves = learning_curves({m: runs[keys[m]] for m in models})
    for row in rows:
        row["val_auc_by_epoch"] = curves.get(row["model"], {}).get("mean")
    write_table(rows, columns, out, name, {**table_meta(data.name, seeds, epochs, batch_size, command, runs),
                                           "seeds_for": {m: n for m, n in counts.items() if n != seeds},
                                           "tuned_from": tuned})
    plot_learning_curves(curves, os.path.join(out, f"{name}_curves.png"),
                         f"Table 1 models on {data.name} ({seeds} seeds"
                         + "".join(f", {m}: {n}" for m, n in counts.items() if n != seeds) + ")")
    return rows


def models_to_restore(out: str, seeds: int, rows: Sequence[tuple[str, tuple]]) -> list[str]:
    """The finished runs that an inference-only row re-evaluates but that have neither that
    row's kept metrics (`inference_metrics_path`) nor a `model.keras` (git keeps none):
    `table2` trains each again to get it back (`restore_models`). `rows` holds
    `(run key, inference changes)` pairs."""
    return list(dict.fromkeys(
        run_dir for key, changes in dict.fromkeys(rows) for seed in range(seeds)
        for run_dir in [run_dir_of(out, key, seed)]
        if os.path.exists(os.path.join(run_dir, "metrics.json"))
        and _kept_for(inference_metrics_path(run_dir, changes),
                      read_json(os.path.join(run_dir, "metrics.json"), required=True)) is None
        and not os.path.exists(os.path.join(run_dir, "model.keras"))))


def table2(dataset: str | pipeline.PreparedDataset,
           out: str, seeds: int = 3, epochs: int | None = None,
           data_dir: str | None = None, rows_spec: Sequence[Row] = TABLE2_ROWS,
           batch_size: int = 256, timing_batches_count: int = 20, common: Sequence[str] = (),
           command: str = "", tuned: dict | None = None, name: str = "table2",
           finished_only: bool = False) -> list[dict]:
    """Trains every distinct Table 2 variant; inference-only rows reuse the full model.

    `tuned` (from `load_tuned`) adds HierDiffuse's tuned overrides to every row
    (the tuning run of the winner is reused as in `table1`); `name` is as in `table1`.
    `finished_only` trains nothing: it writes the rows whose runs have all finished
    (a table that takes several sessions, while it is under way), and its caption
    names the rows not yet run.
    """
    check_table_name(name)
    base_overrides = tuned_overrides(tuned, ["hierdiffuse"], common)["hierdiffuse"]
    pending = []
    if finished_only:
        def finished(row: Row) -> bool:  # A sampler row whose models must be restored is not.
            key = run_key("hierdiffuse", base_overrides + row.train)
            return (all(os.path.exists(os.path.join(run_dir_of(out, key, seed), "metrics.json"))
                        for seed in range(seeds))
                    and not (row.infer and models_to_restore(out, seeds, [(key, row.infer)])))
        pending = [f"2({r.group}) {r.variant}" for r in rows_spec if not finished(r)]
        rows_spec = [r for r in rows_spec if finished(r)]
    full_rows = [r.variant for r in rows_spec if not r.train and not r.infer]
    if not full_rows:  # Checked before any training.
        raise ConfigError("Table 2 needs at least one row of the full model to take deltas against"
                          + (" (with --finished-only: its runs have not all finished)" if finished_only else ""))
    data = pipeline.open_dataset(dataset, data_dir)
    try:  # First: on another machine type a restore fails, and that is better known before hours of training.
        restore_models(models_to_restore(out, seeds, [(run_key("hierdiffuse", base_overrides + r.train), r.infer)
                                                      for r in rows_spec if r.infer]), data_dir)
    except training.RestoreError as error:
        raise training.RestoreError(
            f"{error}. Table 2's inference-only rows (the samplers, 2(d)) re-evaluate the models whose "
            f"AUC the full model's row reports; write them to another --out, where they train a full "
            f"model of their own") from error
    runs = train_runs(out, data, table2_jobs(tuned, rows_spec, common), seeds, epochs, data_dir, common,
                      reuse_from=os.path.join(out, "tuning"))
    batches = timing_batches(data, batch_size, timing_batches_count)
    models, sources, aucs, chosen = {}, {}, {}, {}
    for r in rows_spec:
        metrics = runs[run_key("hierdiffuse", base_overrides + r.train)]
        model, sources[r.variant] = timing_model(metrics[0]["run_dir"], batches[0])
        models[r.variant] = with_inference_changes(model, r.infer)  # The same weights, another sampler.
        aucs[r.variant] = auc_of(metrics, data, changes=r.infer)
        chosen[r.variant] = best_epochs(metrics)
    speed = time_inference(models, batches, either_compile=[r.variant for r in rows_spec if r.infer])
    full = float(np.mean(aucs[full_rows[0]]))
    rows = []
    for r in rows_spec:
        stats = summary(aucs[r.variant])
        rows.append({"group": r.group, "variant": r.variant, **stats,
                     "delta": stats["auc_mean"] - full, "batches_per_sec": speed[r.variant],
                     "speed_source": sources[r.variant], "paper_auc": r.paper_auc, "paper_infer": r.paper_infer,
                     "train_overrides": list(r.train), "tuned_overrides": list(base_overrides),
                     "inference_changes": dict(r.infer), "best_epochs": chosen[r.variant],
                     "seeds": list(range(seeds))})
    columns = [("group", "table", "2({})"), ("variant", "variant", "{}"),
               ("auc_pm", "AUC (mean ± std)", "{}"), ("delta", "Δ vs ours", "{:+.4f}"),
               ("best_epochs", "best val. epoch / epochs run (per seed)", "{}"),
               ("batches_per_sec", "infer. batches/s", "{:.1f}"), ("paper_auc", "paper AUC", "{:.4f}"),
               ("paper_infer", "paper infer.", "{:.2f}")]
    # One learning curve per trained variant; the full model's several rows share one.
    labels = {run_key("hierdiffuse", base_overrides + r.train): r.variant if r.train else "full model"
              for r in rows_spec if not r.infer}
    curves = learning_curves({labels[k]: v for k, v in runs.items() if k in labels})
    write_table(rows, columns, out, name, {**table_meta(data.name, seeds, epochs, batch_size, command, runs),
                                           "tuned_from": tuned, "pending_rows": pending,
                                           "val_auc_by_epoch": curves})
    plot_learning_curves(curves, os.path.join(out, f"{name}_curves.png"),
                         f"Table 2 variants on {data.name} ({seeds} seeds)")
    return rows


def robustness(out: str, noise: Sequence[float], seeds: int = 3, epochs: int | None = None,
               data_dir: str | None = None, models: Sequence[str] = ROBUSTNESS_MODELS,
               common: Sequence[str] = (), command: str = "") -> list[dict]:
    """AUC against the noise-click rate on `synthetic_interest_ctr`; writes a table and a plot."""
    unknown = [n for n in noise if n not in NOISE_CONFIGS]
    if unknown:
        raise ConfigError(f"--noise: no synthetic config for {unknown}; known rates: {sorted(NOISE_CONFIGS)}")

    datasets = {rate: pipeline.open_dataset(f"synthetic_interest_ctr/{NOISE_CONFIGS[rate]}", data_dir)
                for rate in noise}

    def noise_runs(rate: float, wait: bool):
        return train_runs(os.path.join(out, NOISE_CONFIGS[rate]), datasets[rate], [(m, ()) for m in models],
                          seeds, epochs, data_dir, common, wait=wait)

    for rate in noise:  # Every run that no other process holds, before waiting for any.
        noise_runs(rate, wait=False)
    rows, trained = [], {}
    for rate in noise:
        runs = noise_runs(rate, wait=True)
        trained.update({(rate, key): seeds_run for key, seeds_run in runs.items()})
        for m in models:
            metrics = runs[run_key(m, ())]
            stats = summary([r["auc"] for r in metrics], [r["logloss"] for r in metrics])
            rows.append({"noise": rate, "model": m, **stats,
                         "seeds": list(range(seeds))})
    columns = [("noise", "noise-click rate", "{:.1f}"), ("model", "model", "{}"),
               ("auc_pm", "AUC (mean ± std)", "{}"), ("logloss_mean", "log loss", "{:.4f}")]
    write_table(rows, columns, out, "robustness",
                table_meta("synthetic_interest_ctr", seeds, epochs, None, command, trained))
    plot_robustness(rows, os.path.join(out, "robustness.png"))
    return rows
