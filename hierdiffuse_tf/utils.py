"""Small helpers shared across the package."""

import time

import keras

PACKAGE = "hierdiffuse_tf"


def serializable(cls):
    """Registers a Keras object under the `hierdiffuse_tf` package, so `.keras` files load."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)


def utc_timestamp() -> str:
    """Now, as every result file records it: `2026-12-01 21:30 UTC`."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
