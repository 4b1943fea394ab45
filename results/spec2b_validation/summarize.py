"""Rebuilds this folder's tables from the committed run files: `runs.md` (every run) and
`head_to_head.md` (HierDiffuse against tuned DIEN, mean ± std over seeds 0-2).

    python results/spec2b_validation/summarize.py                      # from the committed files
    python results/spec2b_validation/summarize.py --add NAME=RUN_DIR   # copy a run in first
    python results/spec2b_validation/summarize.py --test --add NAME=RUN_DIR   # and evaluate it on test

A run directory is what `hierdiffuse train ... --eval-split validation --out RUN_DIR` wrote;
`--test` evaluates its saved best-epoch model on the test split (`training.evaluate_run`) into
`NAME/test_metrics.json`. The models themselves are not committed. Then
`hierdiffuse experiment readme --out results/spec2b_validation` splices `head_to_head.md`
into the README and docs/model-quality.md.
"""

import argparse
import json
import os
import shutil

from hierdiffuse_tf.experiments.report import summary

HERE = os.path.dirname(os.path.abspath(__file__))
HEAD_TO_HEAD = (("HierDiffuse, SPEC 2b default (with `readout_recency`)", "hierdiffuse_readout_recency"),
                ("DIEN, `learning_rate=0.003 dropout=0.2` (the 3-epoch tuning's winner)", "dien_tuned"),
                ("HierDiffuse, SPEC 2b before `readout_recency`", "hierdiffuse_default"))


def read(name: str, file: str) -> dict | None:
    path = os.path.join(HERE, name, file)
    return json.load(open(path)) if os.path.exists(path) else None


def add(name: str, run_dir: str, test: bool) -> None:
    os.makedirs(os.path.join(HERE, name), exist_ok=True)
    for file in ("metrics.json", "config.json"):
        shutil.copy2(os.path.join(run_dir, file), os.path.join(HERE, name, file))
    if test:
        from hierdiffuse_tf import training

        metrics = training.evaluate_run(run_dir, "movielens_100k_ctr", "test", verbose=0)
        metrics.pop("model_dir")
        with open(os.path.join(HERE, name, "test_metrics.json"), "w") as f:
            json.dump({**metrics, "evaluated_from": os.path.basename(os.path.normpath(run_dir))}, f, indent=2)


def runs_table() -> str:
    rows = ["| run | dataset | split | AUC | test AUC | best epoch | epochs run | training s | commit |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name in sorted(os.listdir(HERE)):
        m, c, t = read(name, "metrics.json"), read(name, "config.json"), read(name, "test_metrics.json")
        if m:
            test = f"{t['auc']:.4f}" if t else ""
            rows.append(f"| {name} | {m['dataset']} | {m['split']} | {m['auc']:.4f} | {test} | "
                        f"{m.get('best_epoch')} | {m.get('epochs_run')} | {m['seconds']:.0f} | "
                        f"{str(c.get('git_commit'))[:12]} |")
    return "\n".join(rows) + "\n"


def head_to_head() -> str:
    rows = ["| model | validation AUC (mean ± std) | test AUC (mean ± std) | test AUC per seed |",
            "|---|---|---|---|"]
    for label, prefix in HEAD_TO_HEAD:
        names = [f"{prefix}_seed{s}" for s in range(3)]
        val = summary([read(n, "metrics.json")["auc"] for n in names])
        test = summary([read(n, "test_metrics.json")["auc"] for n in names])
        rows.append(f"| {label} | {val['auc_pm']} | {test['auc_pm']} | "
                    + ", ".join(f"{a:.4f}" for a in test["aucs"]) + " |")
    return ("\n".join(rows) + "\n\n_ml-100k, seeds 0-2, at most 8 epochs with early stopping on validation AUC "
            "(patience 2); made by `python results/spec2b_validation/summarize.py`._\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--add", action="append", default=[], metavar="NAME=RUN_DIR")
    parser.add_argument("--test", action="store_true", help="also evaluate each added run on test")
    args = parser.parse_args()
    for pair in args.add:
        add(*pair.split("=", 1), test=args.test)
    for file, text in (("runs.md", runs_table()), ("head_to_head.md", head_to_head())):
        with open(os.path.join(HERE, file), "w") as f:
            f.write(text)
    print(head_to_head())
