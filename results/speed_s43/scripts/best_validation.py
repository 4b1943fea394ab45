"""Each finished run's best validation AUC (the epoch early stopping kept), per seed, and
their mean and std, for run folders of any table (test-evaluated or not).

    python results/speed_s43/scripts/best_validation.py NAME=OUT/runs/KEY [NAME=...]

Used on 2026-12-07 to read DiffuRec's Table 1 runs on ml-100k with and without the
attention dropout (the compare command reads only validation-evaluated runs, and the
older table runs' seeds 1 and 2 were evaluated on test).
"""

import glob
import json
import os
import sys

import numpy as np


def main(pairs: list[str]) -> None:
    print("| runs | best validation AUC per seed | mean ± std |")
    print("|---|---|---|")
    for pair in pairs:
        name, _, folder = pair.partition("=")
        best = []
        for path in sorted(glob.glob(os.path.join(folder, "seed*", "metrics.json"))):
            with open(path) as f:
                best.append(max(json.load(f)["history"]["val_auc"]))
        mean, std = float(np.mean(best)), float(np.std(best))  # Population std, as the tables report it.
        spread = f"{mean:.4f} ± {std:.4f}" if len(best) > 1 else "(one run)"
        print(f"| {name} | {', '.join(f'{b:.4f}' for b in best)} | {spread} |")


if __name__ == "__main__":
    main(sys.argv[1:])
