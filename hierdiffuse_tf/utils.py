"""Small helpers shared across the package."""

import keras

PACKAGE = "hierdiffuse_tf"


def serializable(cls):
    """Registers a Keras object under the `hierdiffuse_tf` package, so `.keras` files load."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)
