"""Table 2's runs of two tunings side by side, read from the run folders: for each variant
trained at the new tuning, its test AUC and best validation AUC (mean ± std over the seeds,
from each run's metrics.json) against the same variant at the old tuning, and the deltas
against each tuning's full model. The sampler rows (d) are read from the metrics kept beside
the full model's runs (`metrics_sampler=*.json`), once the table has evaluated them.

    python results/speed_s44/scripts/table2_moved.py OUT OLD_SETTING [NEW_SETTING]

A run key at the old tuning is the new key with OLD_SETTING added (and NEW_SETTING, if
given, taken out). Used on 2026-12-07 for ml-100k's Table 2 of 2026-12-05 (learning rate
3e-3, wider widths) against the one trained again at the defaults of 2026-12-07:

    python results/speed_s44/scripts/table2_moved.py results/ml100k_table2 learning_rate=0.003
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


def summary(paths: list[str], value) -> str:
    values = [value(load(p)) for p in paths]
    if not values:
        return ""
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}" + ("" if len(values) == 3 else f" ({len(values)} seeds)")


def best_val(metrics: dict) -> float:
    return max(metrics["history"]["val_auc"])


def main(out: str, old_setting: str, new_setting: str = "") -> None:
    base = os.path.join(out, "runs")
    print("| run key at the new tuning | test AUC, old | test AUC, new | best val. AUC, old | best val. AUC, new | best epochs, new |")
    print("|---|---|---|---|---|---|")
    for folder in sorted(glob.glob(os.path.join(base, "*"))):
        model, *sets = os.path.basename(folder).split("__")
        if old_setting in sets or (new_setting and new_setting not in sets) or not runs(folder):
            continue
        # The key at the old tuning, sorted as `experiments.runs.run_key` sorts it.
        old = os.path.join(base, "__".join([model, *sorted([s for s in sets if s != new_setting] + [old_setting])]))
        epochs = ", ".join(f"{m['best_epoch']}/{len(m['history']['val_auc'])}" for m in map(load, runs(folder)))
        print(f"| {os.path.basename(folder)} | {summary(runs(old), lambda m: m['auc'])} "
              f"| {summary(runs(folder), lambda m: m['auc'])} | {summary(runs(old), best_val)} "
              f"| {summary(runs(folder), best_val)} | {epochs} |")
        samplers = {os.path.basename(p) for p in runs(old, "metrics_sampler=*.json") + runs(folder, "metrics_sampler=*.json")}
        for name in sorted(samplers):  # The same trained models, scored by another sampler.
            print(f"| {os.path.basename(folder)}, {name[8:-5]} | {summary(runs(old, name), lambda m: m['auc'])} "
                  f"| {summary(runs(folder, name), lambda m: m['auc'])} | | | |")


if __name__ == "__main__":
    main(*sys.argv[1:])
