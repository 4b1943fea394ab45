"""Runs in its own process under `KERAS_BACKEND` (jax, torch): a forward pass and one
training step of a model from the registry, using only `keras.ops` model math.

Prints one JSON line: the loss before and after one gradient step, and the backend.
"""

import json
import sys

import keras
import numpy as np

from conftest import small_model  # This file's folder is on sys.path.
from hierdiffuse_tf.export import example_request


def main(name: str) -> None:
    keras.utils.set_random_seed(0)
    model = small_model(name, dropout=0.0)
    x = {k: keras.ops.convert_to_tensor(v) for k, v in example_request(model.config, 16).items()}
    y = keras.ops.convert_to_tensor(np.random.default_rng(0).integers(0, 2, 16).astype("float32"))
    first = keras.ops.convert_to_numpy(model(x)["ctr"])
    assert first.shape == (16,) and np.all(np.isfinite(first))
    np.testing.assert_array_equal(first, keras.ops.convert_to_numpy(model(x)["ctr"]))  # Deterministic.
    if name == "hierdiffuse":  # `rank`'s path: one user side broadcast against every candidate.
        user = model.user_side({k: v[:1] for k, v in x.items()})
        ranked = model.score_candidates(user, x["target_item"], x["target_cat"])
        rows = {k: keras.ops.repeat(v[:1], 16, axis=0) if not k.startswith("target_") else v for k, v in x.items()}
        np.testing.assert_allclose(keras.ops.convert_to_numpy(ranked),
                                   keras.ops.convert_to_numpy(model.score(rows)), rtol=1e-5, atol=1e-6)
    keras.utils.set_random_seed(1)
    before = step(model, x, y, learning_rate=0.0)  # The same draws for both measurements.
    keras.utils.set_random_seed(1)
    step(model, x, y, learning_rate=0.05)
    keras.utils.set_random_seed(1)
    after = step(model, x, y, learning_rate=0.0)
    print(json.dumps({"backend": keras.backend.backend(), "model": name, "before": before, "after": after}))


def step(model, x, y, learning_rate: float) -> float:
    """One plain gradient step on BCE + the model's auxiliary losses; returns the loss."""
    backend = keras.backend.backend()
    variables = model.trainable_variables
    if backend == "jax":
        import jax

        def loss_fn(values):
            mapping = list(zip(variables, values))
            with keras.StatelessScope(state_mapping=mapping):
                out = model.forward(x, training=True, labels=y)
                return model.bce(y, out.logit) + out.aux_loss

        loss, grads = jax.value_and_grad(loss_fn)([v.value for v in variables])
    elif backend == "torch":
        import torch

        for v in variables:
            v.value.grad = None
        out = model.forward(x, training=True, labels=y)
        loss = model.bce(y, out.logit) + out.aux_loss
        loss.backward()
        grads = [v.value.grad if v.value.grad is not None else torch.zeros_like(v.value)
                 for v in variables]
        loss = loss.detach()
    else:
        raise SystemExit(f"backend_worker runs under jax or torch, not {backend}")
    assert any(float(keras.ops.max(keras.ops.abs(g))) > 0 for g in grads), "no gradient reached a weight"
    for v, g in zip(variables, grads):
        v.assign(v - learning_rate * keras.ops.convert_to_tensor(g))
    return float(keras.ops.convert_to_numpy(loss))


if __name__ == "__main__":
    main(sys.argv[1])
