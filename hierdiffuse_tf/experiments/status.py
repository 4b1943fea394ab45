"""`hierdiffuse experiment status`: where a long experiment stands, read from its run folders.

A table's runs live in `OUT/runs/<key>/seed<k>/`, and its tuning's in
`OUT/tuning/runs/...` (`runs.run_dir_of`). Each is, by what it holds:

* **finished**: its `metrics.json` (the split it was evaluated on, its AUC, and
  every epoch's validation AUC);
* **training**: its `train.lock` names a live process (`runs.claim_run`);
* **stopped**: a backup of N epochs and no live process; the same command
  resumes it from there (`run_record`), or from its first epoch if N is 0 or
  the backup cannot be resumed faithfully (`run_record.backup_problem`, said
  in the result column).

Nothing is written, and no lock is taken (a lock taken to test it would turn
away a process that claims the run at that moment). A run that no process has
started has no folder, so it is not listed: the command itself lists its plan
as it goes.
"""

from __future__ import annotations

import dataclasses
import glob
import os

from hierdiffuse_tf.experiments.report import summary
from hierdiffuse_tf.run_record import RECORD, backup_problem
from hierdiffuse_tf.utils import read_json  # None for a file missing or cut short.


@dataclasses.dataclass(frozen=True)
class RunStatus:
    """One run folder, as `run_status` reads it."""

    run: str  # `<key>/seed<k>`, under `runs/` or `tuning/runs/` of the experiment.
    state: str  # "finished", "training" or "stopped".
    epochs: int  # Epochs trained so far.
    val_auc: tuple[float, ...]  # Validation AUC after each of those epochs.
    result: str = ""  # A finished run's metric, e.g. "test AUC 0.8714"; for a stopped run, a note.
    pid: int | None = None  # The process training it.
    auc: float | None = None  # A finished run's AUC on its split.


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Another user's process: alive.
        return True
    return True


def _lock_pid(run_dir: str) -> int | None:
    """The live process named by the run's `train.lock`, if any."""
    try:
        with open(os.path.join(run_dir, "train.lock")) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and _alive(pid) else None


def run_status(run_dir: str, name: str) -> RunStatus:
    metrics = read_json(os.path.join(run_dir, "metrics.json"))
    if metrics is not None:
        history = metrics.get("history", {}).get("val_auc", [])
        result = f"{metrics.get('split', 'test')} AUC {metrics['auc']:.4f}" if "auc" in metrics else ""
        return RunStatus(name, "finished", int(metrics.get("epochs_run", len(history))), tuple(history), result,
                         auc=metrics.get("auc"))
    backup = os.path.join(run_dir, "backup")
    record = read_json(os.path.join(backup, RECORD)) or {}
    history = tuple(record.get("history", {}).get("val_auc", []))
    pid = _lock_pid(run_dir)
    # A backup that cannot be resumed faithfully is removed when the run is taken up again.
    result = "" if pid or not backup_problem(backup) else "starts again from epoch 1 (backup not resumable)"
    return RunStatus(name, "training" if pid else "stopped", int(record.get("epochs", 0)), history, result,
                     pid=pid)


def experiment_status(out: str) -> list[RunStatus]:
    """Every run folder of the experiment under `out`: its tables' runs, then its tuning's."""
    if not os.path.isdir(out):
        raise FileNotFoundError(f"{out!r} is not a folder; --out is an experiment's output folder")
    found = []
    for runs in (os.path.join(out, "runs"), os.path.join(out, "tuning", "runs")):
        for run_dir in sorted(glob.glob(os.path.join(runs, "*", "seed*"))):
            if os.path.isdir(run_dir):
                found.append(run_status(run_dir, os.path.relpath(run_dir, out)))
    return found


def state_counts(statuses: list[RunStatus]) -> dict[str, int]:
    """How many runs are finished, training and stopped."""
    return {state: sum(s.state == state for s in statuses) for state in ("finished", "training", "stopped")}


def markdown_status(statuses: list[RunStatus]) -> str:
    """A table of the runs, then a count of each state."""
    lines = ["| run | state | epochs | validation AUC by epoch | result |", "|---|---|---|---|---|"]
    for s in statuses:
        state = f"training (pid {s.pid})" if s.state == "training" else s.state
        aucs = ", ".join(f"{v:.4f}" for v in s.val_auc) or "-"
        lines.append(f"| {s.run} | {state} | {s.epochs} | {aucs} | {s.result or '-'} |")
    counts = state_counts(statuses)
    lines.append("")
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items())
                 + " (runs not started yet have no folder and are not listed)")
    rows = seeds_so_far(statuses)
    if rows:
        lines += ["", "Tables' rows so far, over their finished seeds (mean ± std as the tables give it):", "",
                  "| row | seeds finished | test AUC (mean ± std) |", "|---|---|---|"]
        lines += [f"| {key} | {len(aucs)} | {summary(aucs)['auc_pm']} |" for key, aucs in rows.items()]
    return "\n".join(lines)


def seeds_so_far(statuses: list[RunStatus]) -> dict[str, list[float]]:
    """`{row key: [test AUC of each finished seed]}` for the tables' runs (`runs/<key>/seed<k>`),
    before a table is written: what its `AUC (mean ± std)` column would read now."""
    rows: dict[str, list[float]] = {}
    for s in statuses:
        parts = s.run.split(os.sep)
        if len(parts) == 3 and parts[0] == "runs" and s.state == "finished" and s.auc is not None:
            rows.setdefault(parts[1], []).append(float(s.auc))
    return rows
