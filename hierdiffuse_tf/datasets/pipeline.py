"""From a built TFDS split to batched, prefetched `tf.data` input for `model.fit`."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import glob
import os
import shutil
import warnings

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import hierdiffuse_tf.datasets as project_datasets
from hierdiffuse_tf.datasets.beam_base import BeamBehaviourCtrBuilder
from hierdiffuse_tf.errors import HierDiffuseError
from hierdiffuse_tf.utils import read_json, write_json

AUTOTUNE = tf.data.AUTOTUNE


class DatasetError(HierDiffuseError):
    """An unknown dataset, a missing build, or a bad data/manual dir."""


def check_name(name: str) -> None:
    """Raises `DatasetError` for a name that is not one of the project's builders."""
    base = name.split("/")[0].split(":")[0]
    if base not in project_datasets.NAMES:
        raise DatasetError(f"Unknown dataset {name!r}. Known datasets: {sorted(project_datasets.NAMES)}"
                           " (a config may follow a slash, e.g. synthetic_interest_ctr/noise_10)")


def get_builder(name: str, data_dir: str | None = None, **kwargs) -> tfds.core.DatasetBuilder:
    check_name(name)
    return tfds.builder(name, data_dir=data_dir, **kwargs)


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None,
            beam_options=None, builder_kwargs: dict | None = None,
            max_bad_fraction: float | None = None) -> tfds.core.DatasetBuilder:
    """Builds a dataset (once; later calls reuse it) and returns its builder.

    `beam_options` (`PipelineOptions`) pick the Beam runner of the Beam
    builders; `max_bad_fraction` overrides their malformed-row budget.
    """
    if manual_dir is not None and not os.path.isdir(manual_dir):
        raise DatasetError(f"--manual-dir {manual_dir!r} does not exist or is not a directory")
    builder_kwargs = dict(builder_kwargs or {})
    if max_bad_fraction is not None:
        check_name(name)
        if not issubclass(tfds.builder_cls(name.split("/")[0]), BeamBehaviourCtrBuilder):
            raise DatasetError(f"--max-bad-fraction applies to the Beam builders only, not {name!r}")
        builder_kwargs["max_bad_fraction"] = max_bad_fraction
    builder = get_builder(name, data_dir=data_dir, **builder_kwargs)
    if beam_options is None and isinstance(builder, BeamBehaviourCtrBuilder):
        # Without this Beam parses sys.argv (our own CLI flags) as its options.
        beam_options = tfds.core.lazy_imports.apache_beam.options.pipeline_options.PipelineOptions([])
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir, beam_options=beam_options)
    builder.download_and_prepare(download_config=download_config)
    return builder


def prepared_builder(name: str, data_dir: str | None = None, auto_prepare: bool = True,
                     builder_kwargs: dict | None = None):
    """The builder of a prepared dataset, preparing it first if allowed."""
    builder = get_builder(name, data_dir=data_dir, **(builder_kwargs or {}))
    if not builder.is_prepared():
        if not auto_prepare:
            raise DatasetError(f"Dataset {name!r} is not prepared in {builder.data_dir}. "
                               f"Run `hierdiffuse prepare --dataset {name}` first.")
        tf.get_logger().info("Preparing %s in %s", name, builder.data_dir)
        builder = prepare(name, data_dir=data_dir, builder_kwargs=builder_kwargs)
    return builder


@dataclasses.dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset, resolved once and handed down: its name and TFDS builder,
    with the vocabulary and sequence shape that size a model for it.

    Example:
    >>> data = open_dataset("movielens_100k_ctr")
    >>> data.model_values()  # {"num_items": 1618, "num_cats": 21, "max_long": 100, ...}
    >>> data.batches("train", 256, shuffle=True)
    """

    name: str
    builder: tfds.core.DatasetBuilder

    def model_values(self) -> dict:
        """`{num_items, num_cats, max_long, num_sessions, session_len}`."""
        return {**vocabulary(self.builder), **sequence_shape(self.builder)}

    def num_examples(self, split: str) -> int:
        return self.builder.info.splits[split].num_examples

    def batches(self, split: str, batch_size: int, **kwargs) -> tf.data.Dataset:
        """`make_dataset` of one split."""
        return make_dataset(self.builder, split, batch_size, **kwargs)


def open_dataset(dataset: "str | PreparedDataset", data_dir: str | None = None,
                 auto_prepare: bool = True) -> PreparedDataset:
    """The handle of a prepared dataset (preparing it first if allowed); a handle is returned as is."""
    if isinstance(dataset, PreparedDataset):
        return dataset
    check_name(dataset)
    return PreparedDataset(dataset, prepared_builder(dataset, data_dir, auto_prepare))


def split_label(batch: dict):
    """`(features, label)` with a float32 label; `timestamp` is dropped."""
    features = {k: v for k, v in batch.items() if k not in ("label", "timestamp")}
    return features, tf.cast(batch["label"], tf.float32)


# A split read more than once (training, validation) is kept in memory, decoded,
# up to this size: decoding each example is most of the input pipeline's cost.
CACHE_LIMIT_BYTES = 2 * 2**30

# A shuffled split that `cache()` cannot keep (several files, or too large decoded) is
# held as compact arrays up to this size (`in_memory`): ml-1m's training split is 2.0 GiB.
IN_MEMORY_LIMIT_BYTES = 4 * 2**30

# The narrower integer type that each feature is held in, in memory (`load_arrays`);
# any other integer feature is held as int32 (ids index vocabularies) and read back as int64.
COMPACT_DTYPES = {"label": np.int8, "long_popular": np.int8, "short_popular": np.int8,
                  "timestamp": np.int64}


def compact_dtype(name: str, dtype) -> np.dtype:
    """The type a feature is held in by `load_arrays`: narrower for integers, as is otherwise."""
    dtype = np.dtype(dtype)
    return np.dtype(COMPACT_DTYPES.get(name, np.int32)) if np.issubdtype(dtype, np.integer) else dtype


def decoded_bytes(builder: tfds.core.DatasetBuilder, split: str, compact: bool = False) -> int:
    """The size of a split once decoded: every feature's elements, at its dtype's width
    (at `compact_dtype`'s with `compact`)."""
    per_example = sum(int(np.prod(f.shape, dtype=np.int64))
                      * (compact_dtype(name, f.np_dtype) if compact else np.dtype(f.np_dtype)).itemsize
                      for name, f in builder.info.features.items())
    return per_example * builder.info.splits[split].num_examples


def cacheable(builder: tfds.core.DatasetBuilder, split: str, shuffle: bool) -> bool:
    """Whether `make_dataset(..., cache=True)` keeps `split` in memory: only where that
    changes nothing read (a fixed file order: one shard, or no shuffling) and it is at
    most `CACHE_LIMIT_BYTES` decoded."""
    return ((not shuffle or builder.info.splits[split].num_shards == 1)
            and decoded_bytes(builder, split) <= CACHE_LIMIT_BYTES)


def in_memory(builder: tfds.core.DatasetBuilder, split: str, shuffle: bool) -> bool:
    """Whether `make_dataset(..., cache=True)` reads a shuffled `split` from compact arrays
    (`load_arrays`, stored once and memory-mapped: `held_arrays`), in a fresh random order
    each epoch: where `cacheable` refuses it and the arrays are at most `IN_MEMORY_LIMIT_BYTES`."""
    return (shuffle and not cacheable(builder, split, shuffle)
            and decoded_bytes(builder, split, compact=True) <= IN_MEMORY_LIMIT_BYTES)


def kept_in_memory(builder: tfds.core.DatasetBuilder, split: str, shuffle: bool) -> bool:
    """Whether `make_dataset(..., cache=True)` reads `split` from memory after its first
    pass, one way (`cacheable`) or the other (`in_memory`)."""
    return cacheable(builder, split, shuffle) or in_memory(builder, split, shuffle)


def load_arrays(builder: tfds.core.DatasetBuilder, split: str, chunk: int = 8192,
                verbose: bool = True) -> dict[str, np.ndarray]:
    """Every feature of `split` as one array, in file order, at `compact_dtype`.

    One decoding pass, with a progress bar. A value that the narrower type cannot
    hold raises `DatasetError` naming the feature, instead of wrapping around.
    """
    features = builder.info.features
    count = builder.info.splits[split].num_examples
    arrays = {name: np.empty((count, *f.shape), compact_dtype(name, f.np_dtype))
              for name, f in features.items()}
    progress = keras.utils.Progbar(count, verbose=int(verbose), unit_name="example")
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            read_config=tfds.ReadConfig(try_autocache=False)).batch(chunk)
    start = 0
    for batch in tfds.as_numpy(ds):
        stop = start + len(batch["label"])
        if stop > count:
            raise DatasetError(f"{builder.name}/{split}: holds more than the {count} examples "
                               f"its metadata says; rebuild it")
        for name, values in batch.items():
            target = arrays[name]
            if np.issubdtype(target.dtype, np.integer) and values.size:
                info = np.iinfo(target.dtype)
                low, high = values.min(), values.max()
                if low < info.min or high > info.max:
                    raise DatasetError(f"{builder.name}/{split}: feature {name!r} holds {low}..{high}, "
                                       f"beyond {target.dtype} that it is kept in (COMPACT_DTYPES)")
            target[start:stop] = values
        start = stop
        progress.update(start)
    if start != count:
        raise DatasetError(f"{builder.name}/{split}: read {start} examples, its metadata says {count}")
    return arrays


# `held_arrays`' splits, opened once per process and shared by every dataset made from them
# (the tf.data functions that read them live as long as the process).
_HELD: dict[tuple[str, str], dict[str, np.ndarray]] = {}

# Beside a prepared dataset's files: each split's `load_arrays`, one `.npy` per feature.
ARRAYS_DIR = "compact_arrays"


def held_arrays(builder: tfds.core.DatasetBuilder, split: str) -> dict[str, np.ndarray]:
    """`load_arrays` of a split, loaded on the first call in a process and reused after.

    The arrays are decoded once per prepared dataset and stored beside its files
    (`stored_arrays`), then memory-mapped: a later process reads them in a second instead of
    decoding the split again (about 160 s for ml-1m's training split on 2 busy cores), and
    two processes training on the same split share one copy of its pages.
    """
    key = (os.fspath(builder.data_dir), split)
    if key not in _HELD:
        _HELD[key] = stored_arrays(builder, split)
    return _HELD[key]


def _split_stamp(builder: tfds.core.DatasetBuilder, split: str) -> dict:
    """What identifies a split's stored arrays: its example count, each file's name, size and
    modification time (a rebuild rewrites them), and the types the arrays are held in."""
    pattern = os.path.join(glob.escape(os.fspath(builder.data_dir)), f"{builder.name}-{split}.*")
    return {"num_examples": builder.info.splits[split].num_examples,
            "files": [[os.path.basename(f), os.path.getsize(f), os.stat(f).st_mtime_ns]
                      for f in sorted(glob.glob(pattern))],
            "dtypes": {name: compact_dtype(name, f.np_dtype).name for name, f in builder.info.features.items()}}


def stored_arrays(builder: tfds.core.DatasetBuilder, split: str) -> dict[str, np.ndarray]:
    """`load_arrays` of a split, memory-mapped from `<data_dir>/compact_arrays/<split>/`.

    The folder is written on first use, and again where the split's files have
    changed since (`_split_stamp`). One process at a time checks and writes it (a
    lock beside it): a second process waits for the first one's arrays instead of
    decoding the split too. Where it cannot be written (a read-only or remote data
    dir, a full disk), the arrays are held in memory as decoded, with a warning.
    """
    data_dir = os.fspath(builder.data_dir)
    if "://" in data_dir:  # A remote data dir (say gs://): no local folder to map from.
        return load_arrays(builder, split)
    root = os.path.join(data_dir, ARRAYS_DIR)
    folder = os.path.join(root, split)
    decoded = None
    try:
        os.makedirs(root, exist_ok=True)
        with _exclusive(os.path.join(root, f"{split}.lock")):
            stamp = _split_stamp(builder, split)
            if read_json(os.path.join(folder, "stamp.json")) != stamp:
                decoded = load_arrays(builder, split)
                _store_arrays(folder, decoded, stamp)
            # Mapped under the lock: another process replaces the folder only while it holds
            # it, and a mapped file outlives its removal.
            return {name: np.load(os.path.join(folder, f"{name}.npy"), mmap_mode="r")
                    for name in builder.info.features}
    except OSError as error:
        warnings.warn(f"{builder.name}/{split}: could not store its decoded arrays in {folder} "
                      f"({error}); each process decodes the split again")
        return decoded if decoded is not None else load_arrays(builder, split)


@contextlib.contextmanager
def _exclusive(lock_path: str):
    """Holds an exclusive `flock` on `lock_path` (the kernel drops it if the process dies)."""
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _store_arrays(folder: str, arrays: dict[str, np.ndarray], stamp: dict) -> None:
    """Writes `arrays` and `stamp` into `folder`, replacing a stale copy: whole or not at
    all (a staging folder, renamed into place; removed if anything fails)."""
    staging = f"{folder}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        os.makedirs(staging)
        for name, values in arrays.items():
            np.save(os.path.join(staging, f"{name}.npy"), values)
        write_json(os.path.join(staging, "stamp.json"), stamp)
        shutil.rmtree(folder, ignore_errors=True)  # A stale copy (a mapped file outlives its removal).
        os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _from_arrays(builder: tfds.core.DatasetBuilder, arrays: dict, batch_size: int, seed: int,
                 drop_remainder: bool, start_epoch: int = 0) -> tf.data.Dataset:
    """Batches gathered from `load_arrays`' arrays in a fresh permutation each epoch,
    with each feature back at its dataset dtype.

    The permutations are drawn from one generator seeded with `seed`: each pass
    over the dataset takes the next, so a dataset made again with the same seed
    reads the same epochs in the same order. The first pass reads epoch
    `start_epoch`'s (0-based) permutation: the ones before it are drawn and dropped.
    """
    names = sorted(arrays)
    dtypes = [np.dtype(builder.info.features[name].np_dtype) for name in names]
    count = len(arrays[names[0]])
    rng = np.random.default_rng(seed)
    for _ in range(start_epoch):
        rng.permutation(count)

    def permutation():
        return rng.permutation(count).astype(np.int64)

    def take(index):  # In numpy: the arrays stay out of the tf.data graph (a graph holds < 2 GiB).
        return [arrays[name][index].astype(dtype, copy=False) for name, dtype in zip(names, dtypes)]

    def gather(index):
        values = tf.numpy_function(take, [index], [tf.as_dtype(d) for d in dtypes], stateful=False)
        return {name: tf.ensure_shape(v, index.shape.concatenate(arrays[name].shape[1:]))
                for name, v in zip(names, values)}

    def epoch(_):
        order = tf.ensure_shape(tf.numpy_function(permutation, [], tf.int64, stateful=True), (count,))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)

    batches = count // batch_size if drop_remainder else -(-count // batch_size)
    ds = tf.data.Dataset.from_tensors(0).flat_map(epoch)
    # Known to Keras, as a file-read split's is: progress bars with a total, no "ran out of data".
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    return ds.map(gather, num_parallel_calls=AUTOTUNE)


def make_dataset(builder: tfds.core.DatasetBuilder, split: str, batch_size: int,
                 shuffle: bool = False, seed: int = 0, shuffle_buffer: int = 50_000,
                 drop_remainder: bool = False, cache: bool = False,
                 start_epoch: int = 0) -> tf.data.Dataset:
    """Batched `(features, label)` for `model.fit`, `evaluate` and `predict`.

    Examples are decoded one by one, then batched, labelled and prefetched.
    With `shuffle`, the file order and a `shuffle_buffer` of examples are
    shuffled with `seed`, anew each epoch.

    With `cache`, for a split that is read more than once, the decoded examples
    are kept in memory after the first pass, where that changes nothing that is
    read (`cacheable`). From the second epoch on the
    examples then come from memory, in the same order (ml-100k's training split:
    about 14k examples/s decoded, 167k from the cache; docs/performance.md).
    A shuffled split that cannot be cached so (ml-1m's training split: 16
    files, 5 GiB decoded) is read from compact arrays, decoded once per build and
    memory-mapped after (`in_memory`, `held_arrays`), and each epoch reads it in a fresh
    permutation of the whole split instead of the shuffled files through a `shuffle_buffer`.

    With `shuffle`, `start_epoch` k makes `model.fit`'s first epoch read the
    order that its epoch k + 1 would read on the dataset made with 0, so that
    a run resumed after k epochs reads its next epoch as if it had never
    stopped (not epoch 1's order again).
    """
    if split not in builder.info.splits:
        raise DatasetError(f"Split {split!r} not in {builder.name}: {sorted(builder.info.splits)}")
    if start_epoch < 0:
        raise ValueError(f"`start_epoch` must be >= 0. Received: {start_epoch}")
    if cache and in_memory(builder, split, shuffle):
        ds = _from_arrays(builder, held_arrays(builder, split), batch_size, seed, drop_remainder, start_epoch)
    else:
        read_config = tfds.ReadConfig(try_autocache=False, shuffle_seed=seed)
        ds = builder.as_dataset(split=split, shuffle_files=shuffle, read_config=read_config)
        if cache and cacheable(builder, split, shuffle):
            ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
        if shuffle:
            _skip_orders(ds, FIT_ITERATORS_PER_EPOCH * start_epoch)
    return ds.map(split_label, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


# Iterators that Keras' `fit` (3.15) makes of a training dataset of known size per epoch, without
# `steps_per_epoch`: one when the epoch begins, which it reads, and one once it has read every
# batch, which the next epoch does not use. A file-read split's order is drawn at each (below);
# the compact arrays draw theirs when a pass begins reading, so they need no such count.
FIT_ITERATORS_PER_EPOCH = 2


def _skip_orders(ds: tf.data.Dataset, count: int) -> None:
    """Moves `ds`'s reshuffling on by `count` orders without reading an example.

    tf.data's `shuffle(..., reshuffle_each_iteration=True)` and TFDS's file
    shuffling draw an order from a seed generator owned by the dataset each
    time an iterator is created, so creating and dropping `count` iterators
    moves the next iterator to the order it would have had. Tested through
    `fit` (tests/test_model.py: a resumed run trains as the uninterrupted
    one), so a Keras or TensorFlow that changes either count fails there.
    """
    for _ in range(count):
        iter(ds)


def sequence_shape(builder: tfds.core.DatasetBuilder) -> dict:
    """`{max_long, num_sessions, session_len}` of a prepared dataset, from its features."""
    features = builder.info.features
    K, N = features["short_items"].shape
    return {"max_long": features["long_items"].shape[0], "num_sessions": K, "session_len": N}


def vocabulary(builder: tfds.core.DatasetBuilder) -> dict:
    """`{num_items, num_cats}` recorded in a prepared dataset's metadata."""
    meta = builder.info.metadata or {}
    missing = [k for k in ("num_items", "num_cats") if k not in meta]
    if missing:
        raise DatasetError(f"{builder.name}: metadata lacks {missing}; rebuild the dataset")
    return {"num_items": int(meta["num_items"]), "num_cats": int(meta["num_cats"])}
