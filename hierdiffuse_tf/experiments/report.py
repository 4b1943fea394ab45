"""Reporting: tables as JSON, CSV and Markdown, their plots, and splicing them into the docs."""

from __future__ import annotations

import csv
import glob
import io
import os
import re
from typing import Mapping, Sequence

import numpy as np

from hierdiffuse_tf import training
from hierdiffuse_tf.config import ConfigError
from hierdiffuse_tf.utils import read_json, utc_timestamp, write_json, write_text


def summary(aucs: list[float], loglosses: list[float] | None = None) -> dict:
    out = {"auc_mean": float(np.mean(aucs)), "auc_std": float(np.std(aucs)), "aucs": aucs,
           "auc_pm": f"{np.mean(aucs):.4f} ± {np.std(aucs):.4f}"}
    if loglosses:
        out["logloss_mean"] = float(np.mean(loglosses))
    return out


def write_table(rows: list[dict], columns: list[tuple[str, str, str]], out: str, name: str,
                meta: dict) -> None:
    """Writes `name.json` (rows and meta), `name.csv` and `name.md` (the columns only).

    `columns` are `(key, title, format)`; the format is a `str.format` spec.
    """
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, f"{name}.json"), {"meta": meta, "rows": rows}, indent=2, default=str)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow([title for _, title, _ in columns])
    writer.writerows([[_cell(r.get(k), f) for k, _, f in columns] for r in rows])
    write_text(os.path.join(out, f"{name}.csv"), table.getvalue())
    lines = ["| " + " | ".join(t for _, t, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(k), f) for k, _, f in columns) + " |" for r in rows]
    batch = f"inference batch size {meta['batch_size']}, " if meta.get("batch_size") else ""
    epochs = "epochs as configured" if meta["epochs"] is None else f"{meta['epochs']} epoch(s)"
    others = meta.get("seeds_for") or {}  # Models with another seed count than the table's.
    seeds = f"{meta['seeds']} seed(s)" + (
        f" ({', '.join(f'{m}: {n}' for m, n in others.items())})" if others else "")
    pending = meta.get("pending_rows")  # A partial table (`--finished-only`) names what it lacks.
    pending = f" **Not yet run:** {'; '.join(pending)}." if pending else ""
    written = _short_commit(meta['git_commit'])
    trained = [c for c in meta.get("run_commits") or [] if c != written]
    trained = f" (runs trained at {', '.join(meta['run_commits'])})" if trained else ""
    caption = (f"\n_{meta['dataset']}, {seeds}, {epochs}, "
               f"{batch}commit {written}{trained}; "
               f"made by `{meta['command']}`._{pending}\n")
    write_text(os.path.join(out, f"{name}.md"), "\n".join(lines) + "\n" + caption)


def check_table_name(name: str) -> None:
    """A table's file name is one word, so that a docs block `<!-- results:NAME -->` can name it."""
    if not re.fullmatch(r"\w+", name):
        raise ConfigError(f"--name: {name!r} is not a table name; use letters, digits and '_' "
                          "(say, table1_defaults)")


def _short_commit(commit: str | None) -> str:
    text = str(commit)
    return text[:10] + ("-dirty" if text.endswith("-dirty") else "")


def _cell(value, fmt: str) -> str:
    return "" if value is None else fmt.format(value)


def table_meta(dataset, seeds, epochs, batch_size, command, runs: Mapping[str, Sequence[dict]] | None = None) -> dict:
    """A table's record: what made it, and when. `runs` are its runs as `train_runs` returns
    them (each seed's metrics with its `run_dir`): the commits they were trained under go in
    `run_commits` (a table that took several sessions has several), since `git_commit` is
    the one that wrote the table."""
    return {"dataset": dataset, "seeds": seeds, "epochs": epochs, "batch_size": batch_size,
            "git_commit": training.git_commit(), "run_commits": run_commits(runs or {}), "command": command,
            "date": utc_timestamp()}


def run_commits(runs: Mapping[str, Sequence[dict]]) -> list[str]:
    """The distinct commits (shortened) that trained each run: every epoch's (`epoch_commits`
    in its metrics, since 2026-12-06) and the one in the `config.json` of its `run_dir`."""
    commits = set()
    for metrics in (m for seeds in runs.values() for m in seeds):
        config = read_json(os.path.join(metrics["run_dir"], "config.json")) or {}
        for commit in [config.get("git_commit"), *(metrics.get("epoch_commits") or [])]:
            if commit:
                commits.add(_short_commit(commit))
    return sorted(commits)


def _axes(figsize=(5.5, 3.6)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, dpi=120)


def _save(fig, ax, path: str, legend_outside: bool = False) -> None:
    """Saves with a grid and a legend; an outside legend sits right of the axes, off the curves."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    if legend_outside:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def learning_curves(runs: dict) -> dict:
    """Validation AUC per epoch, mean and std over seeds: `{key: {"epoch", "mean", "std"}}`.

    `runs` is `train_runs`' result. Epochs that not every seed reached are left out.
    """
    curves = {}
    for key, metrics in runs.items():
        per_seed = [m.get("history", {}).get("val_auc", []) for m in metrics]
        epochs = min((len(h) for h in per_seed), default=0)
        if epochs:
            values = np.array([h[:epochs] for h in per_seed], dtype=float)
            curves[key] = {"epoch": list(range(1, epochs + 1)), "mean": values.mean(0).tolist(),
                           "std": values.std(0).tolist()}
    return curves


# Once the colour cycle is spent, the next curves take the next marker and line style, so no
# two curves look alike.
_STYLES = (("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."))


def plot_learning_curves(curves: dict, path: str, title: str) -> None:
    """Validation AUC against the epoch for each run key (error bars: std over seeds).

    Past 6 curves (Table 2 has 17) the legend moves right of the axes, where it hides none.
    """
    many = len(curves) > 6
    fig, ax = _axes((7.5, 4.0) if many else (6.0, 4.0))  # Sets the Agg backend before pyplot is read.
    import matplotlib.pyplot as plt

    colours = len(plt.rcParams["axes.prop_cycle"])
    for i, (key, c) in enumerate(curves.items()):
        marker, line = _STYLES[i // colours % len(_STYLES)]
        ax.errorbar(c["epoch"], c["mean"], yerr=c["std"], marker=marker, linestyle=line, capsize=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation AUC")
    ax.set_xticks(sorted({e for c in curves.values() for e in c["epoch"]}))
    ax.set_title(title)
    _save(fig, ax, path, legend_outside=many)


def plot_robustness(rows: list[dict], path: str) -> None:
    fig, ax = _axes()
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        ax.errorbar([r["noise"] for r in mine], [r["auc_mean"] for r in mine],
                    yerr=[r["auc_std"] for r in mine], marker="o", capsize=3, label=model)
    ax.set_xlabel("noise-click rate in the histories")
    ax.set_ylabel("test AUC")
    ax.set_title("Robustness to noisy interactions (synthetic_interest_ctr)")
    _save(fig, ax, path)


def splice_readme(readme: str, results: str) -> list[str]:
    """Replaces each `<!-- results:NAME -->...<!-- /results:NAME -->` block with results/NAME.md.

    Each marker stands on a line of its own. A block may name its folder, `<!-- results:FOLDER/NAME -->`: it is filled
    only when `results` is that folder (by its last path part), so two folders
    that both hold a `NAME.md` (say, a table and its record under other
    settings) each keep their own block.
    """
    with open(readme) as f:
        text = f.read()
    replaced = []
    folder = os.path.basename(os.path.normpath(results))

    def fill(match):
        name = match.group(1)
        owner, _, base = name.rpartition("/")
        path = os.path.join(results, f"{base}.md")
        if owner not in ("", folder) or not os.path.exists(path):
            return match.group(0)
        replaced.append(name)
        with open(path) as f:
            return f"<!-- results:{name} -->\n{f.read().strip()}\n<!-- /results:{name} -->"

    # Markers count on lines of their own only, so prose may quote them.
    text = re.sub(r"^<!-- results:((?:[\w.-]+/)?\w+) -->$.*?^<!-- /results:\1 -->$", fill, text,
                  flags=re.S | re.M)
    write_text(readme, text)  # Whole or not at all: the file holds hand-written docs.
    return replaced


def splice_docs(results: str, files: Sequence[str] | None = None) -> dict[str, list[str]]:
    """`splice_readme` over each Markdown file that holds a `<!-- results:NAME -->` block; what it filled, per file.

    By default the files are README.md and every docs/*.md of the current directory (the repository root).
    """
    if files is None:
        files = [f for f in ["README.md", *sorted(glob.glob(os.path.join("docs", "*.md")))] if os.path.exists(f)]
        if not files:
            raise FileNotFoundError(f"no README.md or docs/*.md in {os.getcwd()}; run from the repository root")
    spliced = {}
    for path in files:
        with open(path) as f:
            if not re.search(r"^<!-- results:", f.read(), flags=re.M):
                continue  # No block: the file is left as it is, not rewritten.
        spliced[path] = splice_readme(path, results)
    return spliced
