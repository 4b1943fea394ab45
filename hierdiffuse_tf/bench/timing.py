"""The timing core of every benchmark and of the tables' speed columns.

Paths are timed in interleaved repeats (each repeat runs every path once, so
machine noise hits them alike) after a warm-up, and the median is kept. Work
whose memory or time must be its own runs in a fresh process (`run_isolated`).
This module imports no TensorFlow, so the portable bench runs where it is absent.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import keras
from keras import ops

from hierdiffuse_tf.utils import write_json, write_text


def block(out):
    """Waits for `out` (any nest of tensors) to be computed."""
    for value in keras.tree.flatten(out):
        if hasattr(value, "block_until_ready"):
            value.block_until_ready()  # JAX: no copy to the host.
        else:
            ops.convert_to_numpy(value)


def time_paths(paths: dict, repeats: int = 7, calls: int = 5) -> dict:
    """Median calls/s of each zero-argument callable, interleaved across paths."""
    for fn in paths.values():
        for _ in range(2):
            block(fn())
    samples = {name: [] for name in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            start = time.perf_counter()
            for _ in range(calls):
                out = fn()
            block(out)
            samples[name].append(calls / (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in samples.items()}


def time_batches(fns: dict, batches: list, repeats: int = 5) -> dict:
    """Median batches/s of each one-argument function over the same `batches` (a pass over
    all of them is one call of `time_paths`)."""
    def over_all(fn):
        def one_pass():
            for batch in batches:
                out = fn(batch)
            return out
        return one_pass

    passes = time_paths({name: over_all(fn) for name, fn in fns.items()}, repeats=repeats, calls=1)
    return {name: rate * len(batches) for name, rate in passes.items()}


def machine(tensorflow: str | None = None) -> str:
    """The machine a benchmark ran on, as every result file records it: the architecture,
    the CPU count, the CPU's model where Linux names it (two VMs of the same size can
    differ by a third in speed), and the TensorFlow version where one is given."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    parts = [platform.machine(), f"{os.cpu_count()} CPUs", cpu, f"TF {tensorflow}" if tensorflow else ""]
    return ", ".join(p for p in parts if p)


def write(result: dict, path: str | None, render) -> None:
    """Writes the result as JSON and, beside it, its Markdown table (`render(result)`)."""
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_json(path, result, indent=2)
        write_text(os.path.splitext(path)[0] + ".md", render(result))



class IsolatedRunError(RuntimeError):
    """A benchmark subprocess failed; `returncode` < 0 is the signal that killed it."""

    def __init__(self, returncode: int, stderr: str):
        how = (f"was killed by signal {-returncode}" if returncode < 0 else
               f"exited with {returncode}" if returncode else "printed no result")
        hint = " (the kernel's OOM killer sends 9)" if returncode == -9 else ""
        super().__init__(f"The benchmark process {how}{hint}. Its last output:\n{stderr[-2000:]}")
        self.returncode = returncode


def run_isolated(module: str, call: str, show_progress: bool = False) -> dict:
    """`hierdiffuse_tf.bench.<module>.<call>` in a fresh Python process, so its time and peak memory are its own.

    The call's JSON result is the process's last stdout line. With
    `show_progress`, its stderr (logs, progress bars) goes to ours as it runs.
    """
    import subprocess
    import sys

    code = (f"import json; from hierdiffuse_tf.bench import {module} as m; "
            f"print(json.dumps(m.{call}))")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=None if show_progress else subprocess.PIPE, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise IsolatedRunError(out.returncode, out.stderr or "(shown above)")
    return json.loads(lines[-1])
