"""The benchmarks (`hierdiffuse bench ...`), each reporting ratios taken in one run, as JSON.

- `timing`: the timing core every benchmark and the tables' speed columns use;
- `inference`: the serving paths under TensorFlow (`bench inference`);
- `training`: training examples/s and the step's profile (`bench train`, `bench profile`);
- `data`: the input pipeline and the Beam builder (`bench data`, `bench beam`);
- `portable`: the model math on any Keras backend, without TensorFlow
  (`python -m hierdiffuse_tf.bench.portable`).

Nothing is imported here, so `portable` runs where TensorFlow is not installed.
"""
