"""The benchmarks (`hierdiffuse bench ...`), each reporting ratios taken in one run, as JSON.

- `timing`: the timing core every benchmark and the tables' speed columns use;
- `inference`: the serving paths under TensorFlow, and the fusion stage at several batch
  sizes (`bench inference`, `bench fusion`);
- `training`: training examples/s, the step's profile, XLA per model and the time per
  epoch (`bench train`, `bench profile`, `bench xla`, `bench epoch`);
- `data`: the input pipeline and the Beam builder (`bench data`, `bench beam`);
- `portable`: the model math on any Keras backend, without TensorFlow
  (`python -m hierdiffuse_tf.bench.portable`).

Nothing is imported here, so `portable` runs where TensorFlow is not installed.
"""
