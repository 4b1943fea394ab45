"""`hierdiffuse experiment reproduce`: a dataset's tables in one resumable command.

    tune (validation only)  ->  Table 1 with each model's winner  ->  Table 2 with HierDiffuse's

All three write under one `out`, so each run trains once: a winner's seed-0
tuning run is Table 1's seed 0 (evaluated on test, not trained again), and
Table 1's HierDiffuse runs are Table 2's full-model row. Every step skips what
has finished, so the command resumes where it was stopped, and two processes
given the same command share its runs (`runs.claim_run`).
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

from hierdiffuse_tf.datasets import pipeline
from hierdiffuse_tf.experiments.tables import TABLE1_MODELS, TABLE2_ROWS, Row, table1, table2
from hierdiffuse_tf.experiments.tuning import load_tuned, tune


def reproduce(dataset: str | pipeline.PreparedDataset, out: str, trials: int = 4, seeds: int = 3,
              seeds_for: Mapping[str, int] | None = None, rows_spec: Sequence[Row] = TABLE2_ROWS,
              epochs: int | None = None, data_dir: str | None = None, batch_size: int = 256,
              timing_batches_count: int = 20, common: Sequence[str] = (), command: str = "") -> dict:
    """Writes `out/tuning.*`, `out/table1.*` and `out/table2.*` (`rows_spec`'s rows), in that order.

    Returns `{"tuned": each model's winning overrides, "table1": rows, "table2": rows}`.
    """
    data = pipeline.open_dataset(dataset, data_dir)
    runs = dict(epochs=epochs, data_dir=data_dir, common=common, command=command)
    tune(data, out, models=TABLE1_MODELS, trials=trials, **runs)
    tuned = load_tuned(os.path.join(out, "tuning.json"))  # As `--tuned` reads it: the file is the record.
    timing = dict(batch_size=batch_size, timing_batches_count=timing_batches_count, tuned=tuned)
    first = table1(data, out, seeds=seeds, seeds_for=seeds_for, **timing, **runs)
    second = table2(data, out, seeds=seeds, rows_spec=rows_spec, **timing, **runs)
    return {"tuned": tuned["best"], "table1": first, "table2": second}
