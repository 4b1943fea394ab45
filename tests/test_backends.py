"""The model math is `keras.ops` only: HierDiffuse, DIN and DIEN run a forward pass and one
training step under JAX (and torch, where it is installed), in one process per backend."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backend_worker.py")
BACKENDS = ["jax", pytest.param("torch", marks=pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="torch is not installed"))]


MODELS = ["hierdiffuse", "din", "dien"]


@pytest.fixture(scope="module")
def reports():
    """Each backend's worker, run once for all of `MODELS` (one process per backend: each
    start imports TensorFlow, the backend and Keras, about 8 s), by backend and model."""
    done = {}

    def run(backend):
        if backend not in done:
            env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
            result = subprocess.run([sys.executable, WORKER, ",".join(MODELS)], capture_output=True,
                                    text=True, timeout=900, env=env)
            lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
            done[backend] = ({r["model"]: r for r in lines}, result.stderr[-3000:])
        return done[backend]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", MODELS)
def test_forward_and_one_training_step_on_another_backend(backend, model, reports):
    by_model, stderr = reports(backend)
    assert model in by_model, stderr  # The worker stops at the first model that fails.
    report = by_model[model]
    assert report["backend"] == backend and report["model"] == model
    assert report["after"] < report["before"], report  # One gradient step lowers the loss.
