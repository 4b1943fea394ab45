"""Small helpers shared across the package."""

import json
import os
import time

import keras

from hierdiffuse_tf.errors import HierDiffuseError

PACKAGE = "hierdiffuse_tf"


def serializable(cls):
    """Registers a Keras object under the `hierdiffuse_tf` package, so `.keras` files load."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)


def utc_timestamp() -> str:
    """Now, as every result file records it: `2026-12-01 21:30 UTC`."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def read_json(path: str, required: bool = False):
    """A JSON file's content. A file missing or cut short (a kill mid-write, before
    `write_json` wrote files whole) gives None, or, where it is `required`, raises
    the `OSError` of a missing file or a `HierDiffuseError` naming a malformed one."""
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        if required:
            raise
        return None
    except ValueError as error:
        if required:
            raise HierDiffuseError(f"{path}: not valid JSON ({error})") from error
        return None


def write_text(path: str, text: str) -> None:
    """Writes `text` at `path`, whole or not at all: through a temporary file of this
    process, then a rename, so a reader (say, another experiment process) or a kill
    mid-write never leaves a cut-short file."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def write_json(path: str, value, **kwargs) -> None:
    """Writes `value` as JSON at `path`, whole or not at all (`write_text`). `kwargs`
    go to `json.dumps`."""
    write_text(path, json.dumps(value, **kwargs))
