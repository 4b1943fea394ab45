#!/bin/bash
# Do two commits train a model alike? One ml-100k epoch of MODEL (seed 0, ml-1m's tuned
# settings: dropout 0.2, learning rate 0.003, validation only) at each commit, each in its own
# worktree under /tmp; prints both histories and the largest difference between the weights.
# For the Table 1 rows whose seeds were trained under different commits (docs/experiments.md).
# Usage, from the repository root: results/ml1m/scripts/same_output.sh MODEL COMMIT_A COMMIT_B
set -e
model=$1; shift
out=/tmp/same_output
mkdir -p $out
for c in "$@"; do
  wt=/tmp/wt-$c
  [ -d $wt ] || git worktree add -q --detach $wt $c
  (cd $wt && python -m hierdiffuse_tf.cli train --model $model --dataset movielens_100k_ctr --epochs 1 \
     --seed 0 --set dropout=0.2 --set learning_rate=0.003 --eval-split validation \
     --out $out/$model-$c > $out/$model-$c.log 2>&1)
done
python - "$model" "$out" "$@" <<'PY'
import json, sys
import numpy as np
from hierdiffuse_tf import training
model, out, a, b = sys.argv[1:5]
runs = {c: json.load(open(f"{out}/{model}-{c}/metrics.json")) for c in (a, b)}
for c, r in runs.items():
    print(model, c, "val_auc", r["history"]["val_auc"], "loss", r["history"]["loss"])
wa, wb = (training.load_run_model(f"{out}/{model}-{c}").get_weights() for c in (a, b))
print("largest weight difference", max(float(np.abs(x - y).max()) for x, y in zip(wa, wb)))
PY
