"""`hierdiffuse bench data | beam`: the input pipeline against training, and the Beam builder's throughput."""

from __future__ import annotations

import os
import time

import tensorflow as tf

from hierdiffuse_tf.bench.timing import IsolatedRunError, run_isolated
from hierdiffuse_tf.bench.timing import machine
from hierdiffuse_tf.bench.training import train_throughput
from hierdiffuse_tf.utils import utc_timestamp


def bench_data(dataset: str, data_dir: str | None = None, batch_size: int = 256, batches: int = 200,
               steps: int = 20) -> dict:
    """`tf.data` examples/s from a prepared split against HierDiffuse's training rate, in one run:
    the pipeline as `train` reads it in its first epoch (decoding every example) and in
    the later ones (from the in-memory cache, where `make_dataset` keeps one)."""
    from hierdiffuse_tf.datasets import pipeline

    prepared = pipeline.open_dataset(dataset, data_dir, auto_prepare=False)
    first = _examples_per_sec(prepared.batches("train", batch_size, shuffle=True), batches)
    train = train_throughput("hierdiffuse", batch_size, steps, prepared.model_values())
    result = {"dataset": prepared.name, "data_examples_per_sec": first,
              "train_examples_per_sec": train["examples_per_sec"],
              "ratios": {"data_over_train": first / train["examples_per_sec"]},
              "batch_size": batch_size, "machine": machine(tf.__version__), "date": utc_timestamp()}
    if pipeline.kept_in_memory(prepared.builder, "train", shuffle=True):  # Else every epoch decodes.
        cached = prepared.batches("train", batch_size, shuffle=True, cache=True)
        for _ in cached:  # The first epoch, which fills the cache.
            pass
        result["cached_examples_per_sec"] = later = _examples_per_sec(cached, batches)
        result["ratios"]["cached_over_train"] = later / train["examples_per_sec"]
    return result


def _examples_per_sec(ds, batches: int) -> float:
    """Examples/s over `batches` batches, after the first (which opens files, fills the shuffle buffer)."""
    iterator = iter(ds.repeat().take(batches))
    next(iterator)
    start = time.perf_counter()
    count = 0
    for features, _ in iterator:
        count += int(features["target_item"].shape[0])
    return count / (time.perf_counter() - start)


def bench_beam(rows: int = 2_000_000, workers=(1, 2), workdir: str = "/tmp/hierdiffuse_beam_bench",
               seed: int = 0, on_run=None) -> dict:
    """Rows/s through the Taobao Beam builder on a generated `UserBehavior.csv`.

    The file (`rows` lines, official format) is written to `workdir/manual`
    once and reused; each worker count builds into a fresh data dir on the
    DirectRunner in multi-processing mode, so the runs differ only in workers.
    `on_run(result)` is called after every build with the result so far (the
    CLI writes the JSON there), so a build that kills the process (out of
    memory) does not take the finished ones with it. Each build runs in its own
    process (`beam_build`), so neither inherits the other's memory.
    """
    from hierdiffuse_tf.datasets.taobao_user_behavior_ctr import (
        taobao_user_behavior_ctr_dataset_builder as taobao)
    from hierdiffuse_tf.training import git_commit

    manual = os.path.join(workdir, "manual")
    path = os.path.join(manual, taobao.FILE)
    os.makedirs(manual, exist_ok=True)
    if not os.path.exists(path) or _line_count(path) != rows:
        taobao.write_sample(path, rows, seed=seed)
    runs = []
    result = {"rows": rows, "runs": runs, "seed": seed, "machine": machine(tf.__version__), "git_commit": git_commit(),
              "generated_by": f"taobao_user_behavior_ctr_dataset_builder.write_sample(rows={rows}, seed={seed})"}
    for n in workers:
        try:
            run = run_isolated("data", f"beam_build({rows}, {n}, {workdir!r})", show_progress=True)
        except IsolatedRunError as e:  # An out-of-memory kill is a result too: recorded, not hidden.
            run = {"workers": n, "seconds": None, "rows_per_sec": None, "examples": 0,
                   "complete": False, "error": str(e).splitlines()[0]}
        runs.append(run)
        result["date"] = utc_timestamp()
        if len(runs) > 1:
            result["ratios"] = {f"workers_{r['workers']}_over_{runs[0]['workers']}":
                                r["rows_per_sec"] / runs[0]["rows_per_sec"] for r in runs[1:]
                                if r["complete"] and runs[0]["complete"]}
        if on_run:
            on_run(result)
    return result


def _line_count(path: str) -> int:
    with open(path) as f:
        return sum(1 for _ in f)


def beam_build(rows: int, workers: int, workdir: str) -> dict:
    """One Taobao build of `workdir/manual` on the DirectRunner with `workers` processes.

    Peak memory is the largest single process: this one (the runner) and its
    largest worker, as `getrusage` reports them.
    """
    import resource
    import shutil

    from apache_beam.options.pipeline_options import PipelineOptions

    from hierdiffuse_tf.datasets import pipeline
    from hierdiffuse_tf.datasets.tfds_base import RawDataError

    data_dir = os.path.join(workdir, f"data_{workers}")
    shutil.rmtree(data_dir, ignore_errors=True)
    options = PipelineOptions(["--runner=DirectRunner", f"--direct_num_workers={workers}",
                               "--direct_running_mode=multi_processing"])
    start = time.perf_counter()
    try:
        builder = pipeline.prepare("taobao_user_behavior_ctr", data_dir, os.path.join(workdir, "manual"),
                                   beam_options=options)
        error = None
    except RawDataError as e:  # E.g. the completeness check: recorded, not hidden.
        builder, error = None, str(e)
    seconds = time.perf_counter() - start
    examples = sum(s.num_examples for s in builder.info.splits.values()) if builder else 0
    peak_mb = {who: resource.getrusage(what).ru_maxrss / 1024.0
               for who, what in (("runner", resource.RUSAGE_SELF), ("largest_worker", resource.RUSAGE_CHILDREN))}
    return {"workers": workers, "seconds": seconds, "rows_per_sec": rows / seconds, "examples": examples,
            "examples_per_sec": examples / seconds, "peak_rss_mb": peak_mb, "complete": error is None,
            "error": error}


def markdown_beam(result: dict) -> str:
    lines = ["| DirectRunner workers | seconds | raw rows/s | examples written/s | peak RSS, runner / "
             "largest worker (MB) | build complete |", "|---|---|---|---|---|---|"]
    for r in result["runs"]:
        if r["seconds"] is None:
            lines.append(f"| {r['workers']} | - | - | - | - | no: {r['error'][:100]} |")
            continue
        peak = r.get("peak_rss_mb")
        lines.append(f"| {r['workers']} | {r['seconds']:.0f} | {r['rows_per_sec']:.0f} | "
                     f"{r['examples_per_sec']:.0f} | "
                     + (f"{peak['runner']:.0f} / {peak['largest_worker']:.0f}" if peak else "-")
                     + f" | {'yes' if r['complete'] else 'no: ' + r['error'][:80]} |")
    for key, value in result.get("ratios", {}).items():
        lines.append(f"\n`{key}`: {value:.2f}x.")
    return "\n".join(lines) + (f"\n\n_{result['rows']:,} rows of a generated `UserBehavior.csv`, "
                               f"{result['machine']}, {result['date']}._\n")
