"""The random-number algorithm of Keras' TensorFlow ops, chosen for XLA on CPU.

Keras' TensorFlow backend draws every random number (dropout masks,
`keras.random.normal`, `randint`, ...) with TensorFlow's stateless ops and
their default algorithm, `auto_select`. Outside XLA, TensorFlow resolves
`auto_select` to Philox on CPU and GPU. Inside an XLA-compiled function it
becomes XLA's backend-default generator, which on this project's 2-core CPU
ran about 30 times slower than Philox, and ThreeFry about 3 times faster than
Philox (a mask over 655,360 floats: 430 ms, 14 ms and 4 ms; docs/performance.md,
"XLA and the random numbers"). The dropout inside a transformer block draws
about 1.5 million numbers per training step at batch 256, so under XLA it
decided whether the step was faster or several times slower.

`pin_algorithms()` points Keras' TensorFlow random module at TensorFlow's
own stateless ops with an explicit algorithm:

- `"philox"` by default: outside XLA the algorithm `auto_select` already
  picks, so eager and graph results are bitwise those of plain Keras (tested);
- `"threefry"` while a step that XLA compiles is traced (`inside_xla`, which
  `CTRModel.train_step` enters when the model is compiled with
  `jit_compile=True`). TensorFlow has no ThreeFry kernel outside XLA, so it
  is used only there.

Under XLA the numbers are ThreeFry's: another stream of the same distribution.
This is TensorFlow-only, an edge of the package like `tf.data` and export:
nothing changes under the JAX or torch backends.
"""

from __future__ import annotations

import contextlib
import threading

_STATE = threading.local()  # `.xla`: a step that XLA compiles is being traced on this thread.


def current_algorithm() -> str:
    """The algorithm the pinned ops use now: ThreeFry inside `inside_xla`, else Philox."""
    return "threefry" if getattr(_STATE, "xla", False) else "philox"


@contextlib.contextmanager
def inside_xla(enabled: bool = True):
    """Traces the enclosed ops as part of an XLA-compiled function (`enabled`) or not."""
    previous = getattr(_STATE, "xla", False)
    _STATE.xla = bool(enabled)
    try:
        yield
    finally:
        _STATE.xla = previous


class _Namespace:
    """Attribute access to `base`, with some attributes replaced."""

    def __init__(self, base, **overrides):
        self._base = base
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self._base, name)


def _with_algorithm(fn, keyword: str):
    def call(*args, **kwargs):
        kwargs.setdefault(keyword, current_algorithm())
        return fn(*args, **kwargs)

    call.__wrapped__ = fn
    return call


def pinned_tensorflow(tf):
    """A stand-in for the `tf` module whose stateless random ops take `current_algorithm()`."""
    random = _Namespace(tf.random, **{
        name: _with_algorithm(getattr(tf.random, name), "alg")
        for name in ("stateless_uniform", "stateless_normal", "stateless_truncated_normal")})
    experimental = _Namespace(tf.nn.experimental, stateless_dropout=_with_algorithm(
        tf.nn.experimental.stateless_dropout, "rng_alg"))
    return _Namespace(tf, random=random, nn=_Namespace(tf.nn, experimental=experimental))


def pin_algorithms() -> bool:
    """Pins the algorithms in Keras' TensorFlow random module; True if it applies (TF backend).

    Idempotent. `hierdiffuse_tf` calls it on import, before anything is traced.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    from keras.src.backend.tensorflow import random as keras_tf_random

    if not isinstance(keras_tf_random.tf, _Namespace):
        keras_tf_random.tf = pinned_tensorflow(keras_tf_random.tf)
    return True
