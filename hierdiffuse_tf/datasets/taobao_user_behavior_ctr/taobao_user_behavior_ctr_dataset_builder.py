"""taobao_user_behavior_ctr: Taobao UserBehavior (tianchi dataset 649) as CTR impressions.

Raw file: `UserBehavior.csv` in the manual dir, no header, one behaviour per
line: `user_id,item_id,category_id,behavior_type,timestamp` with
`behavior_type` in `pv|buy|cart|fav` and a Unix timestamp.

Rules (SPEC 1, made concrete for this dataset):

* clicks are `pv` rows (an item page view is Taobao's click); `buy`, `cart`
  and `fav` rows are valid but follow a view of the same item, so they are
  counted (`skip_rows` in the metadata) and not used;
* rows outside the dataset's range, 2017-11-25 00:00 to 2017-12-03 23:59:59
  China time (UTC+8), are dropped and counted;
* sessions split at gaps over 30 minutes;
* split by calendar day (UTC+8): train up to 2017-12-01, validation
  2017-12-02, test 2017-12-03 (the last day);
* a row with the wrong number of fields, a non-integer id or timestamp (the
  reason names the field), or an unknown behaviour type is malformed: counted
  (`bad_rows`) and skipped; more
  than `max_bad_fraction` (1 % by default) fails the build, naming the line.

Ids are dense from the train split; the full data has about 4M items, so
train with `--set num_hash_buckets=N` to bound the embedding tables (docs/training.md).
"""

from __future__ import annotations

import datetime
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from hierdiffuse_tf.datasets.beam_base import (BAD, OK, SKIP, BeamBehaviourCtrBuilder, BeamCtrConfig, Row,
                                            ok_payloads, read_text)
from hierdiffuse_tf.datasets.tfds_base import require_file

FILE = "UserBehavior.csv"
BEHAVIOURS = ("pv", "buy", "cart", "fav")
CLICKS = ("pv",)
CHINA = datetime.timezone(datetime.timedelta(hours=8))


def _day_start(day: str) -> int:
    return int(datetime.datetime.fromisoformat(day).replace(tzinfo=CHINA).timestamp())


FIRST_TS = _day_start("2017-11-25")
END_TS = _day_start("2017-12-04") - 1  # 2017-12-03 23:59:59 +08:00.
VAL_CUTOFF = _day_start("2017-12-02") - 1  # Train: up to the end of 2017-12-01.
TEST_CUTOFF = _day_start("2017-12-03") - 1  # Validation: 2017-12-02; test: 2017-12-03.
INSTRUCTIONS = (
    "Download `UserBehavior.csv` from https://tianchi.aliyun.com/dataset/649 (unzip "
    "UserBehavior.csv.zip) and place it in the manual dir, then run "
    "`hierdiffuse prepare --dataset taobao_user_behavior_ctr --manual-dir DIR`."
)


def parse_line(line: str) -> tuple:
    """One raw line -> `("ok", Row)`, `("skip", reason)` or `("bad", reason)`."""
    if not line.strip():
        return SKIP, "blank line"
    fields = line.strip().split(",")
    if len(fields) != 5:
        return BAD, "wrong number of fields (expected 5)"
    numbers = []
    for index, name in ((0, "user_id"), (1, "item_id"), (2, "category_id"), (4, "timestamp")):
        try:
            numbers.append(int(fields[index]))
        except ValueError:
            return BAD, f"non-integer {name}"
    user, item, cat, ts = numbers
    behaviour = fields[3]
    if behaviour not in BEHAVIOURS:
        return BAD, "unknown behavior_type"
    if not FIRST_TS <= ts <= END_TS:
        return SKIP, "outside 2017-11-25..2017-12-03"
    if behaviour not in CLICKS:
        return SKIP, f"{behaviour} (not a click)"
    return OK, Row(user, item, cat, ts)


class Builder(BeamBehaviourCtrBuilder):
    """Taobao UserBehavior as CTR impressions: page views are clicks, test on 2017-12-03."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "SPEC 1 features; pv clicks; sessions at 30 min; split by day."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
    BUILDER_CONFIGS = [BeamCtrConfig(name="default", description="All users, SPEC 1 defaults.")]

    def _path(self, dl_manager) -> str:
        return require_file(os.fspath(dl_manager.manual_dir), FILE, INSTRUCTIONS)

    def line_parsers(self, dl_manager):
        return {self._path(dl_manager): parse_line}

    def read_clicks(self, pipeline, dl_manager):
        beam = tfds.core.lazy_imports.apache_beam
        outcomes = read_text(pipeline, "UserBehavior", self._path(dl_manager)) | "Parse" >> beam.Map(parse_line)
        return outcomes, ok_payloads(outcomes, "Clicks")

    def rule_metadata(self, spec) -> dict:
        """The split is by fixed days here, so the spec's quantile fractions do not apply."""
        meta = {k: v for k, v in super().rule_metadata(spec).items()
                if k not in ("val_fraction", "test_fraction")}
        return {**meta, "split_rule": "by day (UTC+8): train to 2017-12-01, validation 12-02, test 12-03"}

    def cutoffs(self, clicks):
        beam = tfds.core.lazy_imports.apache_beam
        return clicks.pipeline | "FixedCutoffs" >> beam.Create([(VAL_CUTOFF, TEST_CUTOFF)])


def write_sample(path: str, rows: int, users: int | None = None, items: int | None = None,
                 seed: int = 0) -> str:
    """Writes a synthetic `UserBehavior.csv` of `rows` lines in the official format.

    For tests and the scale benchmark: about 100 behaviours per user, the real
    data's behaviour mix (89 % pv), Zipf-like item popularity, uniform times in
    the dataset's range. Ids are random, not real.
    """
    rng = np.random.default_rng(seed)
    users = users or max(1, rows // 100)
    items = items or max(10, rows // 10)
    user = rng.integers(1, users + 1, size=rows)
    item = np.minimum((rng.pareto(1.2, size=rows) * items / 20).astype(np.int64), items - 1) + 1
    cat = item % max(2, items // 100) + 1
    kind = rng.choice(np.array(BEHAVIOURS), size=rows, p=[0.89, 0.02, 0.055, 0.035])
    ts = rng.integers(FIRST_TS, END_TS + 1, size=rows)
    order = np.lexsort((ts, user))
    with tf.io.gfile.GFile(path, "w") as f:
        for start in range(0, rows, 100_000):
            part = order[start:start + 100_000]
            f.write("".join(f"{u},{i},{c},{k},{t}\n" for u, i, c, k, t in zip(
                user[part].tolist(), item[part].tolist(), cat[part].tolist(),
                kind[part].tolist(), ts[part].tolist())))
    return path
