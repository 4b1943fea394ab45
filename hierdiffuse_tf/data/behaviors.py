"""From raw behaviours to CTR impressions (SPEC section 1), shared by every builder.

A raw behaviour is one row `(user, item, category, timestamp)`. This module
turns a table of them into examples with the features of SPEC 1:

* sessions split wherever the gap between two behaviours exceeds
  `session_gap_seconds`;
* the short-term features are the K most recent sessions before the
  impression (the ongoing session counts, with the behaviours before the
  impression), each keeping its N newest behaviours; the long-term feature is
  the M newest earlier behaviours that the sessions did not keep (older
  sessions, and the overflow of long sessions: ml-100k users rate dozens of
  movies in one sitting, and dropping the overflow would throw most of a
  history away). Every sequence is left-padded, newest last;
* every behaviour is a positive; each gets one negative whose item is drawn
  from the train-split item frequencies (popularity-weighted, as DIEN does),
  never from the user's own history. The draw uses a fixed seed, so the
  negatives are fixed when the dataset is built;
* the split is by time: impressions up to the `1 - val - test` quantile of the
  timestamps train, then validation, then test. So no test impression is older
  than any training impression;
* ids: 0 is padding, 1 is OOV; items and categories seen in the train split get
  ids from 2 on, in order of first appearance;
* `short_popular` / `long_popular` are 1 for items whose train-split count is in
  the top `popular_fraction` of train items.

The per-user work is `user_examples`, a pure function of one user's behaviours
and the global statistics, so a Beam pipeline can run it per key.
"""

from __future__ import annotations

import dataclasses
from typing import Collection, Iterator, Mapping, Sequence

import numpy as np

PAD, OOV = 0, 1
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class SequenceSpec:
    """How impressions are cut from a behaviour stream.

    Args:
        max_long: M, long-term behaviours kept.
        num_sessions: K, short-term sessions kept.
        session_len: N, behaviours kept per session (the newest).
        session_gap_seconds: a gap longer than this starts a new session.
        val_fraction: share of the behaviours for validation: the cut-offs are
            timestamp quantiles, so the splits are periods of time.
        test_fraction: share for test, the newest.
        popular_fraction: items in this top share of train counts are popular.
        min_history: impressions with fewer earlier behaviours are not emitted.
        seed: seed of the negative sampler.
    """

    max_long: int = 100
    num_sessions: int = 4
    session_len: int = 10
    session_gap_seconds: int = 1800
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    popular_fraction: float = 0.2
    min_history: int = 1
    seed: int = 0

    def __post_init__(self):
        for name in ("max_long", "num_sessions", "session_len", "session_gap_seconds"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1. Received: `{name}={getattr(self, name)}`")
        if not (0 <= self.val_fraction and 0 < self.test_fraction
                and self.val_fraction + self.test_fraction < 1):
            raise ValueError("`val_fraction` and `test_fraction` must be >= 0, > 0 and sum below 1. "
                             f"Received: {self.val_fraction}, {self.test_fraction}")
        if not 0.0 <= self.popular_fraction <= 1.0:
            raise ValueError(f"`popular_fraction` must be in [0, 1]. Received: `popular_fraction={self.popular_fraction}`")
        if self.min_history < 0:
            raise ValueError(f"`min_history` must be >= 0. Received: `min_history={self.min_history}`")


@dataclasses.dataclass
class Behaviours:
    """A table of raw behaviours, one entry per row, in any order.

    `target_ok` marks behaviours that may be impressions (all by default); the
    synthetic builder uses it to keep noise clicks in histories only.
    """

    user: np.ndarray
    item: np.ndarray
    cat: np.ndarray
    timestamp: np.ndarray
    target_ok: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.user)
        if self.target_ok is None:
            self.target_ok = np.ones(n, dtype=bool)
        for name in ("item", "cat", "timestamp", "target_ok"):  # `zip` would drop the extra rows.
            if len(getattr(self, name)) != n:
                raise ValueError(f"`{name}` has {len(getattr(self, name))} rows, `user` has {n}")
        if n == 0:
            raise ValueError("No behaviours: the raw data has no valid rows.")


@dataclasses.dataclass
class GlobalStats:
    """What every user's examples need from the whole table (the train split)."""

    val_cutoff: int
    test_cutoff: int
    item_ids: dict
    cat_ids: dict
    popular: frozenset
    neg_items: np.ndarray
    neg_cdf: np.ndarray
    item_cat: dict

    def metadata(self) -> dict:
        return {
            "num_items": len(self.item_ids) + 2,
            "num_cats": len(self.cat_ids) + 2,
            "val_cutoff_timestamp": int(self.val_cutoff),
            "test_cutoff_timestamp": int(self.test_cutoff),
            "num_popular_items": len(self.popular),
        }


def split_of(timestamp: int, stats: GlobalStats) -> str:
    if timestamp <= stats.val_cutoff:
        return "train"
    return "validation" if timestamp <= stats.test_cutoff else "test"


def time_cutoffs(timestamps: np.ndarray, spec: SequenceSpec) -> tuple[int, int]:
    """Timestamps at the train/validation and validation/test boundaries."""
    val_q = 1.0 - spec.val_fraction - spec.test_fraction
    test_q = 1.0 - spec.test_fraction
    val_cut, test_cut = np.quantile(timestamps, [val_q, test_q], method="lower")
    return int(val_cut), int(test_cut)


def compute_stats(b: Behaviours, spec: SequenceSpec) -> GlobalStats:
    """Vocabularies, popularity and the negative sampler, from the train split."""
    val_cut, test_cut = time_cutoffs(b.timestamp, spec)
    train = b.timestamp <= val_cut
    order = np.argsort(b.timestamp[train], kind="stable")
    train_items, train_cats = b.item[train][order], b.cat[train][order]
    items, counts = np.unique(train_items, return_counts=True)
    return stats_from_aggregates(
        (val_cut, test_cut),
        item_order=dict.fromkeys(train_items.tolist()),
        cat_order=dict.fromkeys(train_cats.tolist()),
        items=items, counts=counts,
        # Each train item's category at its first train click, as the Beam pipeline keeps it.
        item_cat=dict(zip(train_items[::-1].tolist(), train_cats[::-1].tolist())), spec=spec)


def stats_from_aggregates(cutoffs: tuple[int, int], item_order, cat_order, items: np.ndarray,
                          counts: np.ndarray, item_cat: dict, spec: SequenceSpec) -> GlobalStats:
    """`GlobalStats` from per-item and per-category aggregates of the train split.

    `item_order` / `cat_order` list the train items / categories in the order
    their ids are given (first appearance); `items` (sorted) and `counts` are
    the train click counts; `item_cat` maps at least every train item to its
    category. The in-process builders and the Beam pipeline both end here.
    """
    ranked = items[np.lexsort((items, -counts))]
    n_popular = int(np.ceil(spec.popular_fraction * len(ranked)))
    return GlobalStats(
        val_cutoff=int(cutoffs[0]),
        test_cutoff=int(cutoffs[1]),
        item_ids={v: i + 2 for i, v in enumerate(item_order)},
        cat_ids={v: i + 2 for i, v in enumerate(cat_order)},
        popular=frozenset(ranked[:n_popular].tolist()),
        neg_items=items,
        neg_cdf=np.cumsum(counts) / counts.sum(),
        item_cat=item_cat,
    )


def split_sessions(timestamps: Sequence[int], gap_seconds: int) -> np.ndarray:
    """Session index of each behaviour of one time-ordered stream."""
    ts = np.asarray(timestamps, dtype=np.int64)
    if len(ts) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(np.diff(ts) > gap_seconds)])


def _left_pad(values: Sequence[int], length: int) -> list[int]:
    values = list(values)[-length:]
    return [PAD] * (length - len(values)) + values


def sample_negative(rng: np.random.Generator, stats: GlobalStats, exclude: set) -> object:
    """One popularity-weighted item that is not in `exclude`."""
    cdf = stats.neg_cdf
    for _ in range(50):
        index = min(int(np.searchsorted(cdf, rng.random(), side="right")), len(cdf) - 1)
        candidate = stats.neg_items[index].item()
        if candidate not in exclude:
            return candidate
    allowed = [i for i, v in enumerate(stats.neg_items.tolist()) if v not in exclude]
    if not allowed:
        raise ValueError("Cannot draw a negative: the user has seen every train item.")
    probs = np.diff(cdf, prepend=0.0)[allowed]
    p = probs / probs.sum()
    return stats.neg_items[allowed[rng.choice(len(allowed), p=p)]].item()


def user_examples(
    user_index: int,
    rows: Sequence[tuple],
    stats: GlobalStats,
    spec: SequenceSpec,
    splits: Collection[str] = SPLITS,
) -> Iterator[tuple[str, str, dict]]:
    """Yields `(split, key, example)` for every impression of one user in `splits`.

    `rows` are the user's `(timestamp, item, cat, target_ok)` tuples. The seed
    of the negative sampler depends only on `spec.seed` and `user_index`, so a
    user's negatives are the same however the users are distributed. A negative
    is drawn for every impression, in `splits` or not, so they are also the same
    whichever `splits` are asked for (`stream_split` asks for one at a time).
    """
    rows = sorted(rows, key=lambda r: (r[0], str(r[1])))
    ts = [r[0] for r in rows]
    raw_items = [r[1] for r in rows]
    session = split_sessions(ts, spec.session_gap_seconds)
    item_ids = [stats.item_ids.get(i, OOV) for i in raw_items]
    cat_ids = [stats.cat_ids.get(r[2], OOV) for r in rows]
    popular = [int(i in stats.popular) for i in raw_items]
    history_set = set(raw_items)
    rng = np.random.default_rng([spec.seed, user_index])
    K, N, M = spec.num_sessions, spec.session_len, spec.max_long
    # starts[s] is the index of the first behaviour of session s.
    starts = np.searchsorted(session, np.arange(session[-1] + 2), side="left") if rows else []
    for i, row in enumerate(rows):
        if not row[3] or i < spec.min_history:
            continue
        split = split_of(row[0], stats)
        negative = sample_negative(rng, stats, history_set)
        if split not in splits:
            continue
        # The K most recent sessions before position i; the ongoing one counts.
        last = session[i - 1] if i else -1
        sessions = range(max(0, last - K + 1), last + 1)
        short = {"items": [], "cats": [], "popular": []}
        kept = set()
        for s in [None] * (K - len(sessions)) + list(sessions):  # Left-pad along K.
            idx = range(starts[s], min(starts[s + 1], i))[-N:] if s is not None else range(0)
            kept.update(idx)
            short["items"].append(_left_pad([item_ids[j] for j in idx], N))
            short["cats"].append(_left_pad([cat_ids[j] for j in idx], N))
            short["popular"].append(_left_pad([popular[j] for j in idx], N))
        # Long-term: the M newest earlier behaviours that the sessions did not keep.
        long_idx = [j for j in range(max(0, i - M - K * N), i) if j not in kept][-M:]
        features = {
            "user_id": user_index,
            "timestamp": int(row[0]),
            "long_items": _left_pad([item_ids[j] for j in long_idx], M),
            "long_cats": _left_pad([cat_ids[j] for j in long_idx], M),
            "long_popular": _left_pad([popular[j] for j in long_idx], M),
            "short_items": short["items"],
            "short_cats": short["cats"],
            "short_popular": short["popular"],
        }
        for label, item, cat in ((1, raw_items[i], row[2]), (0, negative, stats.item_cat.get(negative))):
            example = dict(features)
            example["target_item"] = stats.item_ids.get(item, OOV)
            example["target_cat"] = stats.cat_ids.get(cat, OOV)
            example["label"] = label
            yield split, f"{user_index}_{i}_{label}", example


def group_by_user(b: Behaviours) -> dict:
    """`{user: [(timestamp, item, cat, target_ok), ...]}` in a stable user order."""
    groups: dict = {}
    for u, i, c, t, ok in zip(b.user.tolist(), b.item.tolist(), b.cat.tolist(),
                              b.timestamp.tolist(), b.target_ok.tolist()):
        groups.setdefault(u, []).append((t, i, c, ok))
    return groups


def sorted_users(b: Behaviours) -> list:
    """`[(user, rows), ...]` by `str(user)`; a user's position is its `user_id` feature."""
    return sorted(group_by_user(b).items(), key=lambda kv: str(kv[0]))


def build_metadata(stats: GlobalStats, spec: SequenceSpec, counts: Mapping[str, int]) -> dict:
    """`info.metadata` of a build: vocabulary sizes, cut-offs, example counts, the spec."""
    meta = stats.metadata()
    meta.update({f"num_{s}_examples": counts[s] for s in SPLITS if s in counts})
    meta.update(dataclasses.asdict(spec))
    return meta


def build_examples(b: Behaviours, spec: SequenceSpec) -> tuple[dict, dict]:
    """All impressions of a behaviour table, grouped by split, plus metadata."""
    stats = compute_stats(b, spec)
    out: dict = {s: [] for s in SPLITS}
    for index, (user, rows) in enumerate(sorted_users(b)):
        for split, key, example in user_examples(index, rows, stats, spec):
            out[split].append((key, example))
    return out, build_metadata(stats, spec, {s: len(out[s]) for s in SPLITS})


def stream_split(users: Sequence[tuple], stats: GlobalStats, spec: SequenceSpec,
                 split: str) -> Iterator[tuple[str, dict]]:
    """`(key, example)` of one split's impressions, user by user, without holding them.

    `users` is `sorted_users(...)`. The examples are those `build_examples` puts
    in `split`, in the same order; one pass per split builds features for that
    split only.
    """
    for index, (user, rows) in enumerate(users):
        for _, key, example in user_examples(index, rows, stats, spec, splits=(split,)):
            yield key, example


def feature_shapes(spec: SequenceSpec | Mapping) -> dict[str, tuple]:
    """Shapes of the SPEC 1 features (plus `user_id` and `timestamp`)."""
    get = spec.get if isinstance(spec, Mapping) else lambda k: getattr(spec, k)
    M, K, N = get("max_long"), get("num_sessions"), get("session_len")
    return {
        "user_id": (), "timestamp": (), "target_item": (), "target_cat": (), "label": (),
        "long_items": (M,), "long_cats": (M,), "long_popular": (M,),
        "short_items": (K, N), "short_cats": (K, N), "short_popular": (K, N),
    }
