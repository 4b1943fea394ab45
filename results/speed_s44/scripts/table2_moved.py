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

import glob
import json
import os
import sys

import numpy as np


def load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def runs(folder: str, name: str = "metrics.json") -> list[str]:
    return sorted(glob.glob(os.path.join(folder, "seed*", name)))


def summary(paths: list[str], value, against: list[str] = ()) -> str:
    """Mean ± std of `value` over the runs (population std, as the tables give it), and
    the delta of the mean against the runs `against`."""
    values = [value(load(p)) for p in paths]
    if not values:
        return ""
    text = f"{np.mean(values):.4f} ± {np.std(values):.4f}"
    if against:
        text += f" ({np.mean(values) - np.mean([value(load(p)) for p in against]):+.4f})"
    return text + ("" if len(values) == 3 else f" ({len(values)} seeds)")


def test_auc(metrics: dict) -> float:
    return metrics["auc"]


def best_val(metrics: dict) -> float:
    return max(metrics["history"]["val_auc"])


def main(out: str, old_setting: str, full_key: str) -> None:
    base = os.path.join(out, "runs")

    def old_key(key: str) -> str:  # Sorted as `experiments.runs.run_key` sorts it.
        model, *sets = key.split("__")
        return "__".join([model, *sorted(sets + [old_setting])])

    full, full_old = os.path.join(base, full_key), os.path.join(base, old_key(full_key))
    print("| run key at the new tuning | test AUC, old (Δ) | test AUC, new (Δ) "
          "| best val. AUC, old (Δ) | best val. AUC, new (Δ) | best epochs, new |")
    print("|---|---|---|---|---|---|")
    for folder in sorted(glob.glob(os.path.join(base, "*"))):
        key = os.path.basename(folder)
        if old_setting in key.split("__") or not runs(folder):
            continue
        old = os.path.join(base, old_key(key))
        epochs = ", ".join(f"{m['best_epoch']}/{len(m['history']['val_auc'])}" for m in map(load, runs(folder)))
        print(f"| {key} | {summary(runs(old), test_auc, runs(full_old))} "
              f"| {summary(runs(folder), test_auc, runs(full))} | {summary(runs(old), best_val, runs(full_old))} "
              f"| {summary(runs(folder), best_val, runs(full))} | {epochs} |")
        samplers = {os.path.basename(p) for p in runs(old, "metrics_sampler=*.json") + runs(folder, "metrics_sampler=*.json")}
        for name in sorted(samplers):  # The same trained models, scored by another sampler.
            print(f"| {key}, {name[8:-5]} | {summary(runs(old, name), test_auc, runs(full_old))} "
                  f"| {summary(runs(folder, name), test_auc, runs(full))} | | | |")


if __name__ == "__main__":
    main(*sys.argv[1:])
