"""The behaviour -> impression pipeline on Apache Beam, for datasets too big for one process.

The in-process builders (`tfds_base.BehaviourCtrBuilder`) hold the whole
behaviour table in memory. The Beam builders (Taobao UserBehavior, Amazon
Books) run the same steps as Beam transforms, so the same code runs on the
DirectRunner here and on Dataflow, Spark or Flink:

1. *Parse.* A builder turns every raw line into an outcome: `("ok", Row)`,
   `("skip", reason)` for a valid row that is not a click (or lies outside the
   dataset's time range), or `("bad", reason)` for a malformed one. Outcomes
   are counted by reason; the counts go to `info.metadata` and the log, and
   the build fails when the share of bad rows exceeds `max_bad_fraction`,
   naming the file and its first bad line.
2. *Statistics*, as combiners: the time cut-offs over all clicks (exact
   quantiles from per-timestamp counts, or a builder's fixed dates), which
   define the train split; then, of the train split, per-item first
   appearance, click count and category, and per-category first appearance.
   They are reduced to one `behaviors.GlobalStats`, a side input.
3. *Per-user grouping* is a `GroupByKey`; `behaviors.user_examples` (the same
   function the in-process builders use) cuts each user's impressions.
4. Impressions are partitioned by split and written by TFDS, atomically: a
   build that dies leaves no dataset that looks complete.

Ids: items and categories of the train split get ids from 2 on, in order of
first appearance (ties broken by the raw id's text). The negative sampler's
seed is `(spec.seed, user_index)`, so negatives do not depend on the runner.
The global statistics are a side input: at Taobao's full size (4M items) each
worker holds the item vocabulary in memory (a few hundred MB).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import logging
import os
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from hierdiffuse_tf.data import behaviors
from hierdiffuse_tf.config import ConfigError
from hierdiffuse_tf.datasets.tfds_base import BehaviourCtrBuilder, RawDataError, decode_line, read_lines

OK, SKIP, BAD = "ok", "skip", "bad"


class Row(NamedTuple):
    """One click: raw ids (int or str) and a Unix timestamp."""

    user: object
    item: object
    cat: object
    timestamp: int


@dataclasses.dataclass(kw_only=True)
class BeamCtrConfig(tfds.core.BuilderConfig):
    """A Beam builder's settings.

    Args:
        spec: how impressions are cut (`behaviors.SequenceSpec`).
        max_bad_fraction: the build fails when more than this share of the raw
            rows are malformed.
    """

    spec: behaviors.SequenceSpec = dataclasses.field(default_factory=behaviors.SequenceSpec)
    max_bad_fraction: float = 0.01

    def __post_init__(self):
        check_bad_fraction(self.max_bad_fraction)


def check_bad_fraction(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"`max_bad_fraction` must be in [0, 1]. Received: `max_bad_fraction={value}`")
    return float(value)


def stable_user_index(user) -> int:
    """A non-negative int64 id for a raw user id: the id itself, or a hash of its text."""
    if isinstance(user, (int, np.integer)) and int(user) >= 0:
        return int(user)
    return int(hashlib.md5(str(user).encode("utf-8")).hexdigest()[:15], 16)


def quantile_lower(value_counts: list[tuple[int, int]], q: float) -> int:
    """`np.quantile(values, q, method="lower")` from `(value, count)` pairs."""
    pairs = sorted(value_counts)
    total = sum(c for _, c in pairs)
    index = int(np.floor(q * (total - 1)))
    seen = 0
    for value, count in pairs:
        seen += count
        if seen > index:
            return int(value)
    return int(pairs[-1][0])


def quantile_cutoffs(value_counts: list[tuple[int, int]], spec: behaviors.SequenceSpec) -> tuple[int, int]:
    """The train/validation and validation/test cut-offs, as `behaviors.time_cutoffs`."""
    return (quantile_lower(value_counts, 1.0 - spec.val_fraction - spec.test_fraction),
            quantile_lower(value_counts, 1.0 - spec.test_fraction))


def stats_from_beam(item_aggs, cat_aggs, cutoffs, spec) -> behaviors.GlobalStats:
    """`GlobalStats` from the combiners' outputs: `(item, (first_ts, count, cat))` and `(cat, first_ts)`."""
    if not item_aggs:
        raise RawDataError("The train split is empty: no click lies before the validation cut-off.")
    by_first = sorted(item_aggs, key=lambda kv: (kv[1][0], str(kv[0])))
    by_item = sorted(item_aggs, key=lambda kv: kv[0])
    return behaviors.stats_from_aggregates(
        cutoffs,
        item_order=[item for item, _ in by_first],
        cat_order=[cat for cat, _ in sorted(cat_aggs, key=lambda kv: (kv[1], str(kv[0])))],
        items=np.array([item for item, _ in by_item]),
        counts=np.array([agg[1] for _, agg in by_item], dtype=np.int64),
        item_cat={item: agg[2] for item, agg in item_aggs},
        spec=spec)


def read_text(pipeline, label: str, path: str):
    """The lines of `path` (gzip or not) as text, each decoded as UTF-8 with bad bytes
    replaced, as `read_lines` reads them for the error report. Beam's default text
    coder decodes strictly: one bad byte stopped the build with a `UnicodeDecodeError`
    that named no file or line. Now it makes a bad row, counted and reported."""
    beam = tfds.core.lazy_imports.apache_beam
    return (pipeline
            | f"Read{label}" >> beam.io.ReadFromText(path, coder=beam.coders.BytesCoder())
            | f"Decode{label}" >> beam.Map(decode_line))


def ok_payloads(outcomes, label: str):
    """The payloads of the `("ok", payload)` outcomes of a PCollection."""
    beam = tfds.core.lazy_imports.apache_beam
    return (outcomes
            | f"Keep{label}" >> beam.Filter(lambda o: o[0] == OK)
            | f"Payload{label}" >> beam.Map(lambda o: o[1]))


def outcome_key(outcome: tuple) -> str:
    kind, payload = outcome
    return OK if kind == OK else f"{kind}: {payload}"


def first_bad_line(parsers: dict[str, Callable]) -> tuple[str, int, str] | None:
    """`(path, line_no, text)` of the first malformed line, scanning files in order."""
    for path, parse in parsers.items():
        for line_no, line in read_lines(path):
            if parse(line)[0] == BAD:
                return path, line_no, line
    return None


def check_quality(counts: dict, max_bad_fraction: float, parsers: dict[str, Callable],
                  dataset: str) -> dict:
    """Logs the outcome counts; raises `RawDataError` past the bad-row budget."""
    total = sum(counts.values())
    bad = sum(n for key, n in counts.items() if key.startswith(BAD))
    logging.info("%s: %d raw rows, %d clicks, outcomes %s", dataset, total, counts.get(OK, 0), counts)
    if bad:
        logging.warning("%s: skipped %d malformed rows: %s", dataset, bad,
                        {k: n for k, n in counts.items() if k.startswith(BAD)})
    if total and bad / total > max_bad_fraction:
        where = first_bad_line(parsers)
        place = f"{where[0]}, line {where[1]}: {where[2][:200]!r}" if where else "(not found on rescan)"
        raise RawDataError(
            f"{dataset}: {bad} of {total} raw rows ({bad / total:.1%}) are malformed, more than "
            f"max_bad_fraction={max_bad_fraction}. First bad line: {place}. Counts: {counts}")
    if not counts.get(OK):
        raise RawDataError(f"{dataset}: no valid clicks in the raw files {list(parsers)}. Counts: {counts}")
    return counts


def merge_item_aggs(aggs) -> tuple:
    """Combines `(first_ts, count, cat)` per item: the earliest click's time and category."""
    first, count, cat = None, 0, None
    for ts, n, c in aggs:
        count += n
        if first is None or (ts, str(c)) < (first, str(cat)):
            first, cat = ts, c
    return first, count, cat


def check_complete(builder) -> None:
    """Every split holds exactly the examples the pipeline counted; else the build is removed."""
    meta = builder.info.metadata or {}
    short = {split: (info.num_examples, meta.get(f"num_{split}_examples"))
             for split, info in builder.info.splits.items()
             if meta.get(f"num_{split}_examples") not in (None, info.num_examples)}
    if short:
        tf.io.gfile.rmtree(os.fspath(builder.data_dir))
        raise RawDataError(
            f"{builder.name}: the written splits do not hold what the pipeline produced "
            f"(written, produced): {short}. The incomplete dataset in {builder.data_dir} was removed. "
            "This is a runner problem, not a data problem (see `fix_beam_flush_race`): rebuild, "
            "or use another runner.")


def fix_beam_flush_race() -> bool:
    """Makes the FnApiRunner's timed gRPC output streams safe to write while they flush.

    Apache Beam's `TimeBasedBufferingClosableOutputStream` (the runner side of
    the data plane under the DirectRunner's `multi_processing` and
    `multi_threading` modes) flushes from a timer thread every second:
    `flush_callback(self.get())`, then `self._clear()`. `write` takes no lock,
    so bytes the runner writes while a large buffer is being sent are cleared
    unsent. With a GB-sized PCollection (the train split of a 2M-row Taobao
    file) a quarter of the examples vanished without an error. Taking the
    stream's own flush lock in `write` closes the race (the runner's only
    writer, `fn_runner._send_input_to_worker`, calls `write`). Idempotent;
    returns True when the patch is in place.

    Buffers stay as large as the timer lets them grow (2.1 GB between two
    ticks in a 2M-row build, near gRPC's 2 GiB message limit, and the runner
    then holds several copies). Flushing at the 10 MB size threshold inside
    `write` was tried and hung the 2M-row build (the runner blocked on a
    full send queue while the worker waited for input), so it is not done.
    """
    try:
        from apache_beam.runners.worker import data_plane
    except ImportError:
        return False
    stream = getattr(data_plane, "TimeBasedBufferingClosableOutputStream", None)
    if stream is None:
        return False
    if getattr(stream, "_hierdiffuse_write_locked", False):
        return True
    base_write = data_plane.ClosableOutputStream.write

    def write(self, b, nested=False):
        with self._flush_lock:
            base_write(self, b, nested)

    stream.write = write
    stream._hierdiffuse_write_locked = True
    return True


def _impressions(user_rows, stats, spec):
    user, rows = user_rows
    yield from behaviors.user_examples(stable_user_index(user), list(rows), stats, spec)


class BeamBehaviourCtrBuilder(BehaviourCtrBuilder, skip_registration=True):
    """Base of the Beam builders: parsed raw lines in, SPEC 1 impressions out."""

    BUILDER_CONFIGS = [BeamCtrConfig(name="default")]

    def __init__(self, *, max_bad_fraction: float | None = None, **kwargs):
        """`max_bad_fraction` overrides the config's malformed-row budget for this build."""
        super().__init__(**kwargs)
        self.max_bad_fraction = check_bad_fraction(
            self.builder_config.max_bad_fraction if max_bad_fraction is None else max_bad_fraction)

    def download_and_prepare(self, *, download_config=None, **kwargs):
        """TFDS's build, with Beam's data-plane race fixed and a completeness check."""
        fix_beam_flush_race()
        super().download_and_prepare(download_config=download_config, **kwargs)
        check_complete(self)

    @abc.abstractmethod
    def line_parsers(self, dl_manager) -> dict[str, Callable[[str], tuple]]:
        """`{path: parse(line) -> outcome}` for every raw file, in scan order."""

    @abc.abstractmethod
    def read_clicks(self, pipeline, dl_manager):
        """Returns `(outcomes, clicks)`: every raw line's outcome, and the `Row`s."""

    def rule_metadata(self, spec) -> dict:
        """The build's rules, recorded in `info.metadata`: the sequence spec by default."""
        return dataclasses.asdict(spec)

    def cutoffs(self, clicks):
        """A one-element PCollection `(val_cutoff, test_cutoff)`; quantiles by default."""
        beam = tfds.core.lazy_imports.apache_beam
        spec = self.sequence_spec()
        return (clicks
                | "Timestamps" >> beam.Map(lambda r: r.timestamp)
                | "CountTimestamps" >> beam.combiners.Count.PerElement()
                | "TimestampCounts" >> beam.combiners.ToList()
                | "Cutoffs" >> beam.Map(quantile_cutoffs, spec))

    def read_behaviours(self, dl_manager):  # The in-process hook; unused here.
        raise NotImplementedError("Beam builders read through `read_clicks`.")

    def metadata_dict(self) -> tfds.core.MetadataDict:
        return tfds.core.BeamMetadataDict()  # Values may be one-element PCollections.

    def _split_generators(self, dl_manager, pipeline):
        beam = tfds.core.lazy_imports.apache_beam
        spec = self.sequence_spec()
        meta = self.info.metadata
        parsers = self.line_parsers(dl_manager)
        outcomes, clicks = self.read_clicks(pipeline, dl_manager)

        counts = (outcomes
                  | "OutcomeKey" >> beam.Map(outcome_key)
                  | "CountOutcomes" >> beam.combiners.Count.PerElement()
                  | "OutcomeDict" >> beam.combiners.ToDict()
                  | "CheckQuality" >> beam.Map(check_quality, self.max_bad_fraction,
                                               parsers, self.name))
        meta["raw_rows"] = counts | "RawRows" >> beam.Map(lambda c: sum(c.values()))
        for kind in (BAD, SKIP):
            meta[f"{kind}_rows"] = counts | f"{kind}Rows" >> beam.Map(
                lambda c, k: {key[len(k) + 2:]: n for key, n in c.items() if key.startswith(k)}, kind)

        cutoffs = beam.pvalue.AsSingleton(self.cutoffs(clicks))
        train = clicks | "TrainClicks" >> beam.Filter(lambda r, cut: r.timestamp <= cut[0], cutoffs)
        item_aggs = (train
                     | "ItemKey" >> beam.Map(lambda r: (r.item, (r.timestamp, 1, r.cat)))
                     | "PerItem" >> beam.CombinePerKey(merge_item_aggs))
        cat_aggs = (train
                    | "CatKey" >> beam.Map(lambda r: (r.cat, r.timestamp))
                    | "PerCat" >> beam.CombinePerKey(min))
        stats = (pipeline
                 | "StatsSeed" >> beam.Create([None])
                 | "GlobalStats" >> beam.Map(
                     lambda _, items, cats, cut: stats_from_beam(items, cats, cut, spec),
                     beam.pvalue.AsList(item_aggs), beam.pvalue.AsList(cat_aggs), cutoffs))
        vocab = stats | "StatsMetadata" >> beam.Map(lambda s: s.metadata())
        for key in ("num_items", "num_cats", "val_cutoff_timestamp", "test_cutoff_timestamp",
                    "num_popular_items"):
            meta[key] = vocab | f"Meta_{key}" >> beam.Map(lambda m, k: m[k], key)
        meta.update(self.rule_metadata(spec))
        meta["max_bad_fraction"] = self.max_bad_fraction

        impressions = (clicks
                       | "UserKey" >> beam.Map(lambda r: (r.user, (r.timestamp, r.item, r.cat, True)))
                       | "GroupByUser" >> beam.GroupByKey()
                       | "Impressions" >> beam.FlatMap(_impressions, beam.pvalue.AsSingleton(stats), spec))
        splits = impressions | "BySplit" >> beam.Partition(
            lambda e, n: behaviors.SPLITS.index(e[0]), len(behaviors.SPLITS))
        out = {}
        for split, pcoll in zip(behaviors.SPLITS, splits):
            meta[f"num_{split}_examples"] = pcoll | f"Count_{split}" >> beam.combiners.Count.Globally()
            out[split] = pcoll | f"Keyed_{split}" >> beam.Map(lambda e: (e[1], e[2]))
        return out
