"""Per-split counts of ml-1m's prepared examples: how many sessions hold a behaviour, how
many short- and long-term behaviours an example has, and how many positives are movies
unseen in training. Run from the repository root after `hierdiffuse prepare --dataset
movielens_1m_ctr`; writes results/ml1m/split_stats.json (docs/experiments.md quotes it)."""

import json

from hierdiffuse_tf.data.behaviors import OOV
from hierdiffuse_tf.datasets import pipeline

data = pipeline.open_dataset("movielens_1m_ctr", auto_prepare=False)
stats = {}
for split in ("validation", "test"):
    n = positives = unseen = nonempty = sessions = short = long = 0
    for x, y in data.batches(split, 4096):
        label = y.numpy() > 0.5
        positives += int(label.sum())
        unseen += int(((x["target_item"].numpy() == OOV) & label).sum())
        present = x["short_items"].numpy() > 0
        nonempty += int(present.any(-1).sum())
        sessions += present.shape[0] * present.shape[1]
        short += int(present.sum())
        long += int((x["long_items"].numpy() > 0).sum())
        n += len(label)
    stats[split] = {"examples": n, "nonempty_session_share": nonempty / sessions,
                    "short_behaviours_per_example": short / n, "long_behaviours_per_example": long / n,
                    "unseen_positive_share": unseen / positives}
    print(split, stats[split], flush=True)
with open("results/ml1m/split_stats.json", "w") as f:
    json.dump(stats, f, indent=2)
