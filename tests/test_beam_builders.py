"""The Apache Beam builders (Taobao UserBehavior, Amazon Books) on small raw files
in the official formats, written here."""

import gzip
import json
import os
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

import hierdiffuse_tf  # noqa: F401  (registers the builders)
from hierdiffuse_tf import cli
from hierdiffuse_tf.datasets import beam_base, pipeline
from hierdiffuse_tf.datasets.tfds_base import RawDataError
from hierdiffuse_tf.datasets.amazon_books_ctr import amazon_books_ctr_dataset_builder as amazon
from hierdiffuse_tf.datasets.taobao_user_behavior_ctr import taobao_user_behavior_ctr_dataset_builder as taobao

SPEC_SHAPES = {"long_items": (100,), "short_items": (4, 10), "short_cats": (4, 10),
               "long_popular": (100,), "target_item": (), "label": ()}
BAD_TAOBAO = ["1,2,3,pv",                    # wrong number of fields
              "1,x,3,pv,1511600000",         # non-integer id
              "2,5,3,click,1511600000",      # unknown behaviour type
              "3,5,3,pv,1400000000",         # valid, but outside the dataset's days
              "4,5\udcff,3,pv,1511600000"]   # a byte that is not UTF-8 (0xff) in the item id


def write_taobao(directory, users=30, extra=(), seed=0):
    """UserBehavior.csv: user,item,category,behavior,timestamp; no header."""
    rng = np.random.default_rng(seed)
    lines = []
    for user in range(1, users + 1):
        for ts in np.sort(rng.integers(taobao.FIRST_TS, taobao.END_TS, size=40)):
            kind = rng.choice(["pv"] * 8 + ["buy", "cart", "fav"])
            cat = int(rng.integers(1, 6))
            lines.append(f"{user},{cat * 100 + int(rng.integers(0, 12))},{cat},{kind},{ts}")
    lines += list(extra)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, taobao.FILE), "wb") as f:  # A "\udcXX" in a line is the raw byte XX.
        f.write(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
    return lines


def write_amazon(directory, users=25, extra_reviews=(), seed=0):
    """reviews_Books_5.json.gz (JSON lines) and meta_Books.json.gz (Python literals)."""
    rng = np.random.default_rng(seed)
    asins = [f"B{n:09d}" for n in range(40)]
    reviews = []
    for user in range(users):
        for day in np.sort(rng.choice(np.arange(200), size=20, replace=False)):
            reviews.append(json.dumps({
                "reviewerID": f"A{user:013d}", "asin": str(rng.choice(asins)), "reviewerName": "x",
                "helpful": [0, 0], "reviewText": "Good.", "overall": 5.0, "summary": "ok",
                "unixReviewTime": 1_300_000_000 + int(day) * 86_400, "reviewTime": "01 1, 2011"}))
    reviews += list(extra_reviews)
    # The last item has no metadata line; the one before has no categories.
    meta = [repr({"asin": a, "title": "t", "categories": [["Books", f"Genre{n % 4}", f"Sub{n % 7}"]]})
            for n, a in enumerate(asins[:-2])]
    meta.append(repr({"asin": asins[-2], "title": "t"}))
    os.makedirs(directory, exist_ok=True)
    for name, lines in ((amazon.REVIEWS, reviews), (amazon.META, meta)):
        with gzip.open(os.path.join(directory, name), "wt") as f:
            f.write("\n".join(lines) + "\n")
    return asins


def load(builder, split):
    return list(tfds.as_numpy(builder.as_dataset(split=split)))


def test_quantile_from_counts_matches_numpy():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 50, size=997)
    pairs = list(zip(*np.unique(values, return_counts=True)))
    for q in (0.0, 0.1, 0.8, 0.9, 1.0):
        assert beam_base.quantile_lower(pairs, q) == np.quantile(values, q, method="lower")


def test_taobao_parser_classifies_rows():
    assert taobao.parse_line(f"1,2,3,pv,{taobao.FIRST_TS}")[0] == "ok"
    assert taobao.parse_line(f"1,2,3,buy,{taobao.FIRST_TS}") == ("skip", "buy (not a click)")
    kinds = [taobao.parse_line(line) for line in BAD_TAOBAO]
    assert [k for k, _ in kinds] == ["bad", "bad", "bad", "skip", "bad"]
    # A malformed number's reason names its field.
    assert taobao.parse_line(f"1,2,x,pv,{taobao.FIRST_TS}") == ("bad", "non-integer category_id")
    assert taobao.parse_line("1,2,3,pv,noon") == ("bad", "non-integer timestamp")


def test_odd_raw_values_are_bad_rows_not_crashes():
    from hierdiffuse_tf.datasets.tfds_base import parse_int

    assert amazon.parse_review("{[1]: 2}") == ("bad", "review: not a JSON record")  # TypeError inside.
    with pytest.raises(RawDataError, match=r"f, line 3: field `timestamp` must be an integer, got 'inf'"):
        parse_int("inf", "f", 3, "timestamp")  # OverflowError inside.


@pytest.mark.slow
def test_taobao_builder_features_counts_and_day_split(tmp_path):
    manual = str(tmp_path / "manual")
    lines = write_taobao(manual, extra=BAD_TAOBAO)
    builder = pipeline.prepare("taobao_user_behavior_ctr", str(tmp_path / "data"), manual)
    meta = builder.info.metadata
    assert meta["bad_rows"] == {"wrong number of fields (expected 5)": 1,
                                "non-integer item_id": 2, "unknown behavior_type": 1}
    assert meta["skip_rows"]["outside 2017-11-25..2017-12-03"] == 1
    assert meta["raw_rows"] == len(lines)
    assert "val_fraction" not in meta and meta["split_rule"].startswith("by day")
    clicks = sum(1 for line in lines[:-len(BAD_TAOBAO)] if ",pv," in line)
    total = sum(meta[f"num_{s}_examples"] for s in ("train", "validation", "test"))
    # Every click but each user's first is an impression, with one negative.
    assert total == 2 * (clicks - 30)
    assert meta["num_items"] >= 3 and meta["num_cats"] >= 3
    test = load(builder, "test")
    assert len(test) == meta["num_test_examples"] > 0
    assert all(e["timestamp"] > taobao.TEST_CUTOFF for e in test)  # The last day only.
    assert all(taobao.VAL_CUTOFF < e["timestamp"] <= taobao.TEST_CUTOFF
               for e in load(builder, "validation"))
    for name, shape in SPEC_SHAPES.items():
        assert test[0][name].shape == shape, name
    assert {int(e["label"]) for e in test} == {0, 1}
    # A negative's item is never one the user clicked (anywhere in the data).
    everything = test + load(builder, "validation") + load(builder, "train")
    seen = {}
    for e in everything:
        items = seen.setdefault(int(e["user_id"]), set())
        items.update(e["long_items"].ravel().tolist() + e["short_items"].ravel().tolist())
        if e["label"] == 1:
            items.add(int(e["target_item"]))
    negatives = [e for e in everything if e["label"] == 0]
    assert negatives and all(int(e["target_item"]) not in seen[int(e["user_id"])] for e in negatives)


@pytest.mark.slow
def test_too_many_bad_rows_fail_with_file_and_line_and_leave_nothing(tmp_path):
    manual, data = str(tmp_path / "manual"), str(tmp_path / "data")
    lines = write_taobao(manual, users=3, extra=["1,2,3,pv"] * 20)
    with pytest.raises(RawDataError) as err:
        pipeline.prepare("taobao_user_behavior_ctr", data, manual)
    message = str(err.value)
    first_bad = lines.index("1,2,3,pv") + 1
    assert f"{taobao.FILE}, line {first_bad}" in message and "max_bad_fraction=0.01" in message
    # The failed (interrupted) build left no dataset that looks complete ...
    assert not tfds.builder("taobao_user_behavior_ctr", data_dir=data).is_prepared()
    # ... and the next prepare builds it from scratch: here with a looser budget.
    builder = pipeline.prepare("taobao_user_behavior_ctr", data, manual, max_bad_fraction=0.5)
    assert builder.is_prepared()
    assert builder.info.metadata["bad_rows"] == {"wrong number of fields (expected 5)": 20}
    # Splits that hold fewer examples than the pipeline produced are caught and removed.
    builder.info.metadata["num_train_examples"] += 1
    with pytest.raises(RawDataError, match="do not hold what the pipeline produced"):
        beam_base.check_complete(builder)
    assert not tfds.builder("taobao_user_behavior_ctr", data_dir=data).is_prepared()


@pytest.mark.slow
def test_timed_data_plane_streams_lose_no_bytes_written_during_a_flush():
    """Beam's timer flush clears what was written while it sent; the patch keeps every byte."""
    from apache_beam.runners.worker import data_plane

    assert beam_base.fix_beam_flush_race() and beam_base.fix_beam_flush_race()  # Idempotent.
    received = []

    def slow_send(data):  # Like a large gRPC send: the writer thread runs meanwhile.
        received.append(len(data))
        time.sleep(0.02)

    out = data_plane.TimeBasedBufferingClosableOutputStream(
        close_callback=lambda data: received.append(len(data)), flush_callback=slow_send,
        time_flush_threshold_ms=5)
    chunk = b"x" * 4096
    for i in range(3000):  # 12 MB over about 0.3 s: many timer flushes land mid-write.
        out.write(chunk)
        if i % 10 == 0:
            time.sleep(0.001)
    out.close()
    written = 3000 * len(chunk)
    assert len(received) > 2 and sum(received) == written


@pytest.mark.slow
def test_amazon_builder_joins_categories_and_counts_bad_reviews(tmp_path):
    manual = str(tmp_path / "manual")
    asins = write_amazon(manual, extra_reviews=["{not json", json.dumps({"asin": "B000000001"})])
    builder = pipeline.prepare("amazon_books_ctr", str(tmp_path / "data"), manual)
    meta = builder.info.metadata
    assert meta["bad_rows"] == {"review: not a JSON record": 1, "review: missing reviewerID": 1}
    assert meta["reviews_without_category"] > 0  # The two items without categories.
    # Categories are `categories[0][-1]`: Sub0..Sub6, plus "unknown".
    assert meta["num_cats"] == 2 + 7 + 1
    assert meta["val_fraction"] == 0.1  # Amazon splits at timestamp quantiles.
    assert meta["num_items"] <= 2 + len(asins)
    assert meta["session_gap_seconds"] == 86_400
    train = load(builder, "train")
    assert {e["short_items"].shape for e in train} == {(4, 10)}
    assert meta["val_cutoff_timestamp"] < meta["test_cutoff_timestamp"]
    assert all(e["timestamp"] > meta["test_cutoff_timestamp"] for e in load(builder, "test"))


@pytest.mark.slow
def test_prepare_command_passes_beam_options(tmp_path, capsys):
    manual, data = str(tmp_path / "manual"), str(tmp_path / "data")
    write_taobao(manual, users=8)
    cli.main(["prepare", "--dataset", "taobao_user_behavior_ctr", "--manual-dir", manual,
              "--data-dir", data, "--beam-options", "--runner=DirectRunner --direct_num_workers=1"])
    assert '"num_train_examples"' in capsys.readouterr().out
    assert tfds.builder("taobao_user_behavior_ctr", data_dir=data).is_prepared()


def test_max_bad_fraction_is_for_beam_builders_only(tmp_path):
    with pytest.raises(pipeline.DatasetError, match="Beam builders only"):
        pipeline.prepare("movielens_100k_ctr", str(tmp_path), max_bad_fraction=0.1)
