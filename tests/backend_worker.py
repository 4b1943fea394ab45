"""Runs in its own process under `KERAS_BACKEND` (jax, torch): a forward pass and one
training step of each model named (comma-separated) from the registry, using only
`keras.ops` model math.

Prints one JSON line per model: the loss before and after one gradient step, and the backend.
"""

import json
import sys

import keras
import numpy as np

from conftest import small_model  # This file's folder is on sys.path.
from hierdiffuse_tf.bench.portable import built, jit_with_weights
from hierdiffuse_tf.export import example_request

JAX = keras.backend.backend() == "jax"


def main(name: str) -> None:
    keras.utils.set_random_seed(0)
    model = small_model(name)  # With dropout: HierDiffuse's f_S skip drew seeds in a `cond` (JAX failed).
    x = {k: keras.ops.convert_to_tensor(v) for k, v in example_request(model.config, 16).items()}
    y = keras.ops.convert_to_tensor(np.random.default_rng(0).integers(0, 2, 16).astype("float32"))
    # Builds the weights, which `compiled` passes in; symbolically under JAX (no eager pass).
    if JAX:
        built(model, x)
    else:
        model(x)
    forward = compiled(model, lambda x: model(x)["ctr"])
    first = keras.ops.convert_to_numpy(forward(x))
    assert first.shape == (16,) and np.all(np.isfinite(first))
    # Deterministic: the same scores twice, and (compiled, where a draw would be fixed when
    # traced) no state updated, so no random number drawn.
    np.testing.assert_array_equal(first, keras.ops.convert_to_numpy(forward(x)))
    assert not any(getattr(forward, "assigned", [])), "scoring updated a variable (a seed generator?)"
    if name == "hierdiffuse":  # `rank`'s path: one user side broadcast against every candidate.
        def rank(x):
            user = model.user_side({k: v[:1] for k, v in x.items()})
            return model.score_candidates(user, x["target_item"], x["target_cat"])

        rows = {k: keras.ops.repeat(v[:1], 16, axis=0) if not k.startswith("target_") else v for k, v in x.items()}
        np.testing.assert_allclose(keras.ops.convert_to_numpy(compiled(model, rank)(x)),
                                   keras.ops.convert_to_numpy(compiled(model, model.score)(rows)),
                                   rtol=1e-5, atol=1e-6)
    step = Step(model)
    keras.utils.set_random_seed(1)
    before = step(x, y, learning_rate=0.0)  # The same draws for both measurements.
    keras.utils.set_random_seed(1)
    step(x, y, learning_rate=0.05)
    keras.utils.set_random_seed(1)
    after = step(x, y, learning_rate=0.0)
    print(json.dumps({"backend": keras.backend.backend(), "model": name, "before": before, "after": after}))


def compiled(model, fn):
    """`fn` compiled where the backend compiles (`jit_with_weights` under JAX), as Keras's own
    JAX trainer runs a model; `fn` itself elsewhere. Eager JAX dispatches and compiles op by
    op: about 10 s for HierDiffuse's first forward pass."""
    return jit_with_weights(fn, model) if JAX else fn


class Step:
    """One plain gradient step on BCE + the model's auxiliary losses; a call returns the loss
    before the step."""

    def __init__(self, model):
        self.model = model
        self.variables = model.trainable_variables
        if JAX:
            import jax

            # Traced once, so the noise is drawn once, from the seed state at tracing: every
            # call draws the same noise (what `main`'s `set_random_seed` before each call does
            # for torch).
            self.jax_loss_and_grads = jax.jit(jax.value_and_grad(self.jax_loss))

    def jax_loss(self, values, x, y):
        with keras.StatelessScope(state_mapping=list(zip(self.variables, values))):
            out = self.model.forward(x, training=True, labels=y)
            return self.model.bce(y, out.logit) + out.aux_loss

    def __call__(self, x, y, learning_rate: float) -> float:
        model, variables, backend = self.model, self.variables, keras.backend.backend()
        if backend == "jax":
            loss, grads = self.jax_loss_and_grads([v.value for v in variables], x, y)
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
    for model_name in sys.argv[1].split(","):
        main(model_name)
