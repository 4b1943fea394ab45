"""The model math is `keras.ops` only: HierDiffuse, DIN and DIEN run a forward pass and one
training step under JAX (and torch, where it is installed), each in its own process."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backend_worker.py")
BACKENDS = ["jax", pytest.param("torch", marks=pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="torch is not installed"))]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", ["hierdiffuse", "din", "dien"])
def test_forward_and_one_training_step_on_another_backend(backend, model):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, WORKER, model], capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend and report["model"] == model
    assert report["after"] < report["before"], report  # One gradient step lowers the loss.
