"""Data: raw behaviours to SPEC 1 impressions, TFDS builders, and `tf.data` input."""
