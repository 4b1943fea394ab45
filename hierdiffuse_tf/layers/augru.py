"""DIEN's AUGRU cell: a GRU whose update gate is scaled by an attention score."""

from __future__ import annotations

import keras
from keras import ops

from hierdiffuse_tf.utils import serializable


@serializable
class AUGRUCell(keras.layers.Layer):
    """A GRU cell with an attentional update gate (AUGRU), for `keras.layers.RNN`.

    The last feature of each input step is the attention score a_t; the rest is
    the step's input x_t:

        u_t = sigmoid(W_u x_t + U_u h + b_u),  r_t = sigmoid(W_r x_t + U_r h + b_r)
        h~  = tanh(W_h x_t + r_t * (U_h h) + b_h)
        u'  = a_t * u_t,  h_t = (1 - u') * h + u' * h~

    Args:
        units: int. Width of the hidden state.
        **kwargs: base layer arguments.

    Call arguments:
        inputs: `(B, d_x + 1)`: a step's input with its attention score last.
        states: `[(B, units)]`, the hidden state.

    Returns:
        `(h_t (B, units), [h_t])`.

    Example:
    >>> rnn = keras.layers.RNN(AUGRUCell(32))
    >>> h = rnn(ops.concatenate([interests, attention[..., None]], axis=-1))  # (B, 32)

    References:
        Zhou et al., Deep Interest Evolution Network for Click-Through Rate
        Prediction, AAAI 2019.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        if units < 1:
            raise ValueError(f"`units` must be >= 1. Received: `units={units}`")
        self.units = units
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        x_dim = input_shape[-1] - 1
        self.kernel = self.add_weight(shape=(x_dim, 3 * self.units), name="kernel",
                                      initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(shape=(self.units, 3 * self.units),
                                                name="recurrent_kernel", initializer="orthogonal")
        self.bias = self.add_weight(shape=(3 * self.units,), name="bias", initializer="zeros")

    def call(self, inputs, states, training=None):
        h = states[0] if isinstance(states, (list, tuple)) else states
        x, attention = inputs[:, :-1], inputs[:, -1:]  # (B, d_x), (B, 1)
        x_u, x_r, x_h = ops.split(ops.matmul(x, self.kernel) + self.bias, 3, axis=-1)
        h_u, h_r, h_h = ops.split(ops.matmul(h, self.recurrent_kernel), 3, axis=-1)
        update = ops.sigmoid(x_u + h_u) * attention
        reset = ops.sigmoid(x_r + h_r)
        candidate = ops.tanh(x_h + reset * h_h)
        h_new = (1.0 - update) * h + update * candidate
        return h_new, [h_new]

    def get_config(self):
        return {**super().get_config(), "units": self.units}
