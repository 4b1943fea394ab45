"""`hierdiffuse experiment reproduce`: a dataset's tables in one resumable command.

    tune (validation only)  ->  Table 1 with each model's winner  ->  Table 2 with HierDiffuse's

All three write under one `out`, so each run trains once: a winner's seed-0
tuning run is Table 1's seed 0 (evaluated on test, not trained again), and
Table 1's HierDiffuse runs are Table 2's full-model row. Every step skips what
has finished, so the command resumes where it was stopped, and two processes
given the same command share its runs (`runs.claim_run`).

A stage ends when its last run does, and with two processes one of them would
wait for the other's last run at every stage (up to an epoch or two of a slow
model). So each process first trains ahead (`train_ahead`): every run whose
settings are already known and that no process holds, a model's Table 1 runs
as soon as its own trials have all finished, Table 2's once HierDiffuse's
have, before the trials still to run. A model's results are then complete as
soon as its settings are known, not when every model's tuning is. The stages
then find those runs done.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

from hierdiffuse_tf.datasets import pipeline
from hierdiffuse_tf.experiments.runs import train_runs
from hierdiffuse_tf.experiments.tables import (TABLE1_MODELS, TABLE2_ROWS, Row, seed_counts, table1,
                                               table1_jobs, table2, table2_jobs)
from hierdiffuse_tf.experiments.tuning import (check_untuned_keys, load_tuned, tune, tuning_trials,
                                               winners_so_far)


def reproduce(dataset: str | pipeline.PreparedDataset, out: str, trials: int = 4, seeds: int = 3,
              seeds_for: Mapping[str, int] | None = None, rows_spec: Sequence[Row] = TABLE2_ROWS,
              epochs: int | None = None, data_dir: str | None = None, batch_size: int = 256,
              timing_batches_count: int = 20, common: Sequence[str] = (), command: str = "") -> dict:
    """Writes `out/tuning.*`, `out/table1.*` and `out/table2.*` (`rows_spec`'s rows), in that order.

    Returns `{"tuned": each model's winning overrides, "table1": rows, "table2": rows}`.
    """
    check_untuned_keys(common, "--set")  # Before any training, not once the trials are in.
    data = pipeline.open_dataset(dataset, data_dir)
    train_ahead(data, out, trials, seed_counts(TABLE1_MODELS, seeds, seeds_for), seeds, rows_spec,
                epochs=epochs, data_dir=data_dir, common=common)
    runs = dict(epochs=epochs, data_dir=data_dir, common=common, command=command)
    tune(data, out, models=TABLE1_MODELS, trials=trials, **runs)
    tuned = load_tuned(os.path.join(out, "tuning.json"))  # As `--tuned` reads it: the file is the record.
    timing = dict(batch_size=batch_size, timing_batches_count=timing_batches_count, tuned=tuned)
    first = table1(data, out, seeds=seeds, seeds_for=seeds_for, **timing, **runs)
    second = table2(data, out, seeds=seeds, rows_spec=rows_spec, **timing, **runs)
    return {"tuned": tuned["best"], "table1": first, "table2": second}


def train_ahead(data: pipeline.PreparedDataset, out: str, trials: int, counts: Mapping[str, int], seeds: int,
                rows_spec: Sequence[Row], epochs: int | None = None, data_dir: str | None = None,
                common: Sequence[str] = ()) -> None:
    """Trains, without waiting for another process, every run of `reproduce` whose settings are
    known: Table 1's runs of each model whose trials have all finished, Table 2's once
    HierDiffuse's have, then the tuning trials still to run; again while they make more
    winners known.

    `counts` is each model's seed count for Table 1, `seeds` Table 2's. What another process
    holds is left to it; the stages that follow wait for it and write the tables.
    """
    tuning_out = os.path.join(out, "tuning")
    shared = dict(epochs=epochs, data_dir=data_dir, common=common, wait=False)
    trial_jobs = [(m, t) for m in TABLE1_MODELS for t in tuning_trials(trials)]
    best = winners_so_far(out, TABLE1_MODELS, trials)
    while True:
        tuned = {"path": f"{tuning_out} (the winners so far)", "best": best}
        ready = [m for m in TABLE1_MODELS if m in best]
        if ready:
            train_runs(out, data, table1_jobs(tuned, ready, common), {m: counts[m] for m in ready},
                       reuse_from=tuning_out, **shared)
        if "hierdiffuse" in best:
            train_runs(out, data, table2_jobs(tuned, rows_spec, common), seeds, reuse_from=tuning_out, **shared)
        train_runs(tuning_out, data, trial_jobs, 1, eval_split="validation", reuse_from=out, **shared)
        known, best = best, winners_so_far(out, TABLE1_MODELS, trials)
        if best == known:  # The trials made no new winner known: nothing more to train ahead.
            return
