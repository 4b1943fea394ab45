"""hierdiffuse-tf: HierDiffuse (EMNLP 2025) for Keras 3 / TensorFlow.

Importing the package registers the TFDS builders (`hierdiffuse_tf.datasets`:
ml-100k, ml-1m, the synthetic data, Amazon Books, Taobao) and every custom Keras object, so
`tfds.builder(...)` and `keras.saving.load_model(...)` work after
`import hierdiffuse_tf`.

The model math is plain `keras.ops`: where TensorFlow Datasets is not
installed (a JAX or torch machine running `hierdiffuse_tf.bench.portable`),
the package imports without the builders.

Under the TensorFlow backend it also pins the algorithm of Keras' random ops
(`xla_random`): Philox, the same numbers as plain Keras, outside XLA; ThreeFry,
which XLA compiles well on CPU, inside a step that XLA compiles.
"""

__version__ = "0.1.0"

import importlib.util  # noqa: E402

if importlib.util.find_spec("tensorflow_datasets") is not None:
    from hierdiffuse_tf import datasets  # noqa: F401  (registers the TFDS builders)
from hierdiffuse_tf import xla_random  # noqa: E402

xla_random.pin_algorithms()
from hierdiffuse_tf import models  # noqa: E402,F401  (registers the Keras objects)
