"""The TFDS plumbing every behaviour-stream CTR builder shares.

A concrete builder reads its raw files into `Behaviours` (one hook,
`read_behaviours`) and says how to cut impressions (`sequence_spec`). This base
class turns them into the SPEC 1 features with `behaviors.build_examples`, and
records vocabulary sizes, time cut-offs and counts in `info.metadata`, which
`hierdiffuse train` reads to size the model.
"""

from __future__ import annotations

import abc
import gzip
import inspect
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

from hierdiffuse_tf.data import behaviors


class RawDataError(ValueError):
    """A raw input file is missing or malformed; the message names file and line."""


def features_dict(spec: behaviors.SequenceSpec) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        name: tfds.features.Tensor(shape=shape, dtype=np.int64)
        for name, shape in behaviors.feature_shapes(spec).items()
    })


def parse_int(text: str, path: str, line_no: int, field: str) -> int:
    try:
        return int(float(text)) if field == "timestamp" else int(text)
    except ValueError:
        raise RawDataError(
            f"{path}, line {line_no}: field `{field}` must be an integer, got {text!r}") from None


class BehaviourCtrBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the in-process builders: raw behaviours in, SPEC 1 impressions out."""

    VERSION = tfds.core.Version("1.0.0")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS derives this from the top-level package, which is wrong for the
        # builders installed as `hierdiffuse_tf.datasets` from `datasets/`.
        return epath.Path(inspect.getfile(cls))

    @classmethod
    def _get_pkg_dir_path(cls) -> epath.Path:
        return epath.Path(inspect.getfile(cls)).parent

    @abc.abstractmethod
    def read_behaviours(self, dl_manager: tfds.download.DownloadManager) -> behaviors.Behaviours:
        """Reads the raw data into one table of behaviours."""

    def sequence_spec(self) -> behaviors.SequenceSpec:
        return getattr(self.builder_config, "spec", None) or behaviors.SequenceSpec()

    def description(self) -> str:
        return (self.__doc__ or "").strip()

    def metadata_dict(self) -> tfds.core.MetadataDict:
        """Where `info.metadata` lives (the Beam builders need a Beam-aware one)."""
        return tfds.core.MetadataDict()

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=self.description(),
            features=features_dict(self.sequence_spec()),
            supervised_keys=None,
            metadata=self.metadata_dict(),
        )

    def _split_generators(self, dl_manager):
        spec = self.sequence_spec()
        table = self.read_behaviours(dl_manager)
        examples, meta = behaviors.build_examples(table, spec)
        self.info.metadata.update(meta)
        tf.get_logger().info("%s: %s", self.name, meta)
        return {split: self._generate_examples(rows) for split, rows in examples.items()}

    def _generate_examples(self, rows):
        for key, example in rows:
            yield key, example


def read_lines(path: str, encoding: str = "utf-8"):
    """`(line_no, text)` of every line of a text file, gzip or not (any `tf.io.gfile` path)."""
    with tf.io.gfile.GFile(path, "rb") as raw:
        stream = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
        for line_no, line in enumerate(stream, start=1):
            yield line_no, line.decode(encoding, errors="replace").rstrip("\r\n")


def require_file(directory: str, name: str, instructions: str) -> str:
    path = os.path.join(directory, name)
    if not tf.io.gfile.exists(path):
        raise RawDataError(f"Missing raw file {path}. {instructions}")
    return path
