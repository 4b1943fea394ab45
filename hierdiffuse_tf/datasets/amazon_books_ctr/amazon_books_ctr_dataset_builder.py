"""amazon_books_ctr: Amazon Books reviews as CTR impressions, as DIEN preprocesses them.

Raw files in the manual dir (McAuley's 2014 release, the files DIEN uses):

* `reviews_Books_5.json.gz`: one JSON object per line with at least
  `reviewerID`, `asin` and `unixReviewTime`;
* `meta_Books.json.gz`: one record per line with `asin` and `categories`
  (a list of category paths). The 2014 files write these as Python literals
  (single quotes); strict JSON is read too.

Rules:

* every review is a click (DIEN's convention); the item's category is the last
  category of its first category path (`categories[0][-1]`, as DIEN does);
  a review of an item without metadata, or with no categories, gets the
  category `"unknown"` (counted in `info.metadata["reviews_without_category"]`);
* review times have day resolution, so a session is a run of reviews with
  gaps of at most one day;
* split by time at the 80 % and 90 % quantiles of the review timestamps (the
  cut-offs are recorded in `info.metadata`);
* a line that is not a record, lacks a required field, or has a non-integer
  `unixReviewTime` is malformed: counted (`bad_rows`) and skipped; more than
  `max_bad_fraction` (1 % by default) fails the build, naming the line.
"""

from __future__ import annotations

import ast
import json
import os

import tensorflow_datasets as tfds

from hierdiffuse_tf.data import behaviors
from hierdiffuse_tf.datasets.beam_base import (BAD, OK, BeamBehaviourCtrBuilder, BeamCtrConfig, Row, ok_payloads,
                                            read_text)
from hierdiffuse_tf.datasets.tfds_base import require_file

REVIEWS = "reviews_Books_5.json.gz"
META = "meta_Books.json.gz"
UNKNOWN = "unknown"
INSTRUCTIONS = (
    f"Download `{REVIEWS}` and `{META}` (Amazon product data, 2014 release, "
    "http://jmcauley.ucsd.edu/data/amazon/) into the manual dir, then run "
    "`hierdiffuse prepare --dataset amazon_books_ctr --manual-dir DIR`."
)


def _record(line: str):
    """A JSON object or a Python dict literal; None if the line is neither."""
    for load in (json.loads, ast.literal_eval):
        try:
            value = load(line)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # {[1]: 2}: TypeError.
            continue
        return value if isinstance(value, dict) else None
    return None


def parse_review(line: str) -> tuple:
    """-> `("ok", (asin, reviewer, timestamp))` or `("bad", reason)`."""
    record = _record(line)
    if record is None:
        return BAD, "review: not a JSON record"
    missing = [k for k in ("reviewerID", "asin", "unixReviewTime") if k not in record]
    if missing:
        return BAD, f"review: missing {missing[0]}"
    try:
        ts = int(record["unixReviewTime"])
    except (TypeError, ValueError):
        return BAD, "review: non-integer unixReviewTime"
    return OK, (str(record["asin"]), str(record["reviewerID"]), ts)


def parse_meta(line: str) -> tuple:
    """-> `("ok", (asin, category or None))` or `("bad", reason)`."""
    record = _record(line)
    if record is None:
        return BAD, "meta: not a record"
    if "asin" not in record:
        return BAD, "meta: missing asin"
    paths = record.get("categories") or []
    category = paths[0][-1] if paths and isinstance(paths[0], list) and paths[0] else None
    return OK, (str(record["asin"]), category)


def _join(asin_group):
    """`(asin, {"reviews": [...], "meta": [...]})` -> `Row`s with the item's category."""
    asin, group = asin_group
    categories = [c for c in group["meta"] if c is not None]
    category = categories[0] if categories else UNKNOWN
    for user, ts in group["reviews"]:
        yield Row(user=user, item=asin, cat=category, timestamp=ts)


class Builder(BeamBehaviourCtrBuilder):
    """Amazon Books reviews as CTR impressions (DIEN's preprocessing, SPEC 1 features)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "SPEC 1 features; reviews are clicks; category = categories[0][-1]."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
    BUILDER_CONFIGS = [BeamCtrConfig(
        name="default", description="All reviews, sessions at 1-day gaps.",
        spec=behaviors.SequenceSpec(session_gap_seconds=86_400))]

    def _paths(self, dl_manager) -> tuple[str, str]:
        manual = os.fspath(dl_manager.manual_dir)
        return require_file(manual, REVIEWS, INSTRUCTIONS), require_file(manual, META, INSTRUCTIONS)

    def line_parsers(self, dl_manager):
        reviews, meta = self._paths(dl_manager)
        return {reviews: parse_review, meta: parse_meta}

    def read_clicks(self, pipeline, dl_manager):
        beam = tfds.core.lazy_imports.apache_beam
        reviews_path, meta_path = self._paths(dl_manager)
        reviews = read_text(pipeline, "Reviews", reviews_path) | "ParseReviews" >> beam.Map(parse_review)
        meta = read_text(pipeline, "Meta", meta_path) | "ParseMeta" >> beam.Map(parse_meta)
        outcomes = (reviews, meta) | "AllOutcomes" >> beam.Flatten()

        clicks = (
            {"reviews": ok_payloads(reviews, "Reviews")
                        | "KeyReviews" >> beam.Map(lambda r: (r[0], (r[1], r[2]))),
             "meta": ok_payloads(meta, "Meta")}
            | "JoinByAsin" >> beam.CoGroupByKey()
            | "Rows" >> beam.FlatMap(_join))
        self.info.metadata["reviews_without_category"] = (
            clicks
            | "Uncategorised" >> beam.Filter(lambda r: r.cat == UNKNOWN)
            | "CountUncategorised" >> beam.combiners.Count.Globally())
        return outcomes, clicks
