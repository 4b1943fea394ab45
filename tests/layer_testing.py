"""`run_layer_test`, in the style of keras-hub's `TestCase.run_layer_test`.

It checks every layer the same way: a JSON round-trip of `get_config`, an
eager call, a symbolic call, one `fit` step, and the number of weights.
"""

from __future__ import annotations

import json

import keras
import numpy as np
from keras import ops


def run_layer_test(layer_cls, init_kwargs: dict, inputs: dict, expected_output_shape,
                   expected_num_trainable_weights: int, fit: bool = True):
    """Asserts the standard behaviour of a layer; returns the eager output.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        inputs: call arguments by name (numpy arrays); all are tensors.
        expected_output_shape: shape of the (first) output.
        expected_num_trainable_weights: count after building.
        fit: whether to run one training step through a functional model.
    """
    layer = layer_cls(**init_kwargs)
    # Config round-trip through JSON and the registered name.
    config = layer.get_config()
    restored = layer_cls.from_config(json.loads(json.dumps(config)))
    assert restored.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized))).get_config() == config

    # Eager call.
    output = layer(**{k: ops.convert_to_tensor(v) for k, v in inputs.items()})
    first = output[0] if isinstance(output, (tuple, list)) else output
    assert tuple(first.shape) == tuple(expected_output_shape)
    assert len(layer.trainable_weights) == expected_num_trainable_weights
    assert np.all(np.isfinite(ops.convert_to_numpy(first)))

    # Symbolic call.
    symbolic = {k: keras.Input(shape=v.shape[1:], batch_size=v.shape[0], dtype=str(v.dtype), name=k)
                for k, v in inputs.items()}
    fresh = layer_cls.from_config(config)
    sym_out = fresh(**symbolic)
    sym_first = sym_out[0] if isinstance(sym_out, (tuple, list)) else sym_out
    assert tuple(sym_first.shape)[1:] == tuple(expected_output_shape)[1:]

    if fit:  # One training step through a functional model.
        model = keras.Model(symbolic, sym_first)
        model.compile(optimizer="sgd", loss="mse")
        target = np.zeros(expected_output_shape, "float32")
        model.fit(dict(inputs), target, batch_size=len(target), epochs=1, verbose=0)
    return output
