"""Table 2's runs of two tunings side by side, read from the run folders: for each variant
trained at the new tuning, its test AUC and best validation AUC (mean ± std over the seeds,
from each run's metrics.json) against the same variant at the old tuning, and the deltas
against each tuning's full model. The sampler rows (d) are read from the metrics kept beside
the full model's runs (`metrics_sampler=*.json`), once the table has evaluated them.

    python results/speed_s44/scripts/table2_moved.py OUT OLD_SETTING FULL_KEY

A run key at the old tuning is the new key with OLD_SETTING added. FULL_KEY is the full
model's key at the new tuning; each delta is taken against it (at the old tuning, against
its key with OLD_SETTING added), from the unrounded means. Used on 2026-12-07 for ml-100k's
Table 2 of 2026-12-05 (learning rate 3e-3, wider widths) against the one trained again at the
defaults of 2026-12-07:

    python results/speed_s44/scripts/table2_moved.py results/ml100k_table2 learning_rate=0.003 hierdiffuse__dropout=0.2
"""

import functools
import glob
import os
import sys

import numpy as np

from hierdiffuse_tf.experiments.report import summary
from hierdiffuse_tf.experiments.runs import best_epochs, run_key
from hierdiffuse_tf.utils import read_json


@functools.lru_cache(maxsize=None)
def seeds(folder: str, name: str = "metrics.json") -> tuple:
    """The metrics `name` of each seed of a run folder, each file read once."""
    return tuple(read_json(p) for p in sorted(glob.glob(os.path.join(folder, "seed*", name))))


def cell(runs: tuple, value, against: tuple) -> str:
    """Mean ± std of `value` over the runs, as the tables give it, and the delta of the mean
    against the runs `against` (unrounded)."""
    if not runs:
        return ""
    values = [value(m) for m in runs]
    delta = np.mean(values) - np.mean([value(m) for m in against])
    return (f"{summary(values)['auc_pm']} ({delta:+.4f})"
            + ("" if len(values) == 3 else f" ({len(values)} seeds)"))


def test_auc(metrics: dict) -> float:
    return metrics["auc"]


def best_val(metrics: dict) -> float:
    return max(metrics["history"]["val_auc"])


def main(out: str, old_setting: str, full_key: str) -> None:
    base = os.path.join(out, "runs")

    def old_folder(key: str) -> str:
        model, *sets = key.split("__")
        return os.path.join(base, run_key(model, sets + [old_setting]))

    full, full_old = seeds(os.path.join(base, full_key)), seeds(old_folder(full_key))
    print("| run key at the new tuning | test AUC, old (Δ) | test AUC, new (Δ) "
          "| best val. AUC, old (Δ) | best val. AUC, new (Δ) | best epochs, new |")
    print("|---|---|---|---|---|---|")
    for folder in sorted(glob.glob(os.path.join(base, "*"))):
        key = os.path.basename(folder)
        new, old = seeds(folder), seeds(old_folder(key))
        if old_setting in key.split("__") or not new:
            continue
        print(f"| {key} | {cell(old, test_auc, full_old)} | {cell(new, test_auc, full)} "
              f"| {cell(old, best_val, full_old)} | {cell(new, best_val, full)} | {best_epochs(new)} |")
        samplers = {os.path.basename(p) for f in (old_folder(key), folder)
                    for p in glob.glob(os.path.join(f, "seed*", "metrics_sampler=*.json"))}
        for name in sorted(samplers):  # The same trained models, scored by another sampler.
            print(f"| {key}, {name[8:-5]} | {cell(seeds(old_folder(key), name), test_auc, full_old)} "
                  f"| {cell(seeds(folder, name), test_auc, full)} | | | |")


if __name__ == "__main__":
    main(*sys.argv[1:])
