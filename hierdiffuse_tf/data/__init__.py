"""The SPEC 1 protocol shared by the models and the TFDS builders: `behaviors` (features,
sessions, negatives, the time split). The builders themselves are `hierdiffuse_tf.datasets`."""
