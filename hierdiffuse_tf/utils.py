"""Small helpers shared across the package."""

import json
import os
import time

import keras

PACKAGE = "hierdiffuse_tf"


def serializable(cls):
    """Registers a Keras object under the `hierdiffuse_tf` package, so `.keras` files load."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)


def utc_timestamp() -> str:
    """Now, as every result file records it: `2026-12-01 21:30 UTC`."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def read_json(path: str, required: bool = False):
    """A JSON file's content. A file missing or cut short (a kill mid-write, before
    `write_json` wrote files whole) gives None, or raises where it is `required`."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        if required:
            raise
        return None


def write_json(path: str, value, **kwargs) -> None:
    """Writes `value` as JSON at `path`, whole or not at all: through a temporary file of
    this process, then a rename, so a reader (say, another experiment process) or a kill
    mid-write never leaves a cut-short file. `kwargs` go to `json.dump`."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        json.dump(value, f, **kwargs)
    os.replace(temporary, path)
