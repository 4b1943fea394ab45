"""synthetic_interest_ctr: users with planted long- and short-term interests, plus noise clicks.

Each user has a stable long-term interest (a Dirichlet mixture over categories)
and a short-term interest that drifts: every session has a focus category,
which is kept from the previous session with probability `focus_keep` and
otherwise redrawn from the long-term mixture or, with probability
`explore`, uniformly. A behaviour picks the session's focus with
probability `focus_weight`, else a category from the long-term mixture; the
item inside a category follows a Zipf law, so some items are popular.

With probability `noise_rate`, a behaviour is instead a noise click: an item
drawn uniformly from the whole catalogue. Noise clicks stay in the histories
but are never the target of an impression, so the test AUC measures how well a
model reads the true interests through noisy histories. The true interests are
known, so the noise rate can be swept (`hierdiffuse experiment robustness`).

The configs `noise_0`, `noise_10`, `noise_20`, `noise_30` and `noise_50` set the
noise-click rate in percent (1000 users, M=50, K=4, N=10); `smoke` is a tiny
noise-free population (150 users, M=12, K=2, N=4) for tests and smoke runs.
Any `SyntheticConfig` can be passed as `config=`.
Sessions split at 30-minute gaps; the time split is at the 80 % and 90 %
timestamp quantiles.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from hierdiffuse_tf.data import behaviors
from hierdiffuse_tf.datasets.tfds_base import BehaviourCtrBuilder

START_TIMESTAMP = 1_577_836_800  # 2020-01-01 00:00:00 UTC.


@dataclasses.dataclass(kw_only=True)
class SyntheticConfig(tfds.core.BuilderConfig):
    """A synthetic population; every field changes the generated data."""

    noise_rate: float = 0.0
    num_users: int = 1000
    num_categories: int = 20
    items_per_category: int = 50
    sessions_per_user: int = 12
    session_length: tuple[int, int] = (3, 8)
    focus_keep: float = 0.6
    focus_weight: float = 0.7
    explore: float = 0.2
    dirichlet: float = 0.3
    seed: int = 0
    spec: behaviors.SequenceSpec = dataclasses.field(
        default_factory=lambda: behaviors.SequenceSpec(max_long=50))

    def __post_init__(self):
        if not 0.0 <= self.noise_rate < 1.0:
            raise ValueError(f"`noise_rate` must be in [0, 1). Received: `noise_rate={self.noise_rate}`")
        if self.num_users < 1 or self.num_categories < 2 or self.items_per_category < 1:
            raise ValueError("`num_users` >= 1, `num_categories` >= 2 and `items_per_category` >= 1 "
                             f"are required. Received: {self.num_users}, {self.num_categories}, "
                             f"{self.items_per_category}")


def generate(config: SyntheticConfig) -> behaviors.Behaviours:
    """Draws the behaviour table of a synthetic population."""
    rng = np.random.default_rng(config.seed)
    C, P = config.num_categories, config.items_per_category
    zipf = 1.0 / np.arange(1, P + 1)
    zipf /= zipf.sum()
    rows = {"user": [], "item": [], "cat": [], "timestamp": [], "target_ok": []}
    for user in range(config.num_users):
        long_term = rng.dirichlet(np.full(C, config.dirichlet))
        now = START_TIMESTAMP + int(rng.integers(0, 86_400 * 3))
        focus = rng.choice(C, p=long_term)
        for _ in range(config.sessions_per_user):
            if rng.random() > config.focus_keep:
                focus = rng.integers(C) if rng.random() < config.explore else rng.choice(C, p=long_term)
            for _ in range(rng.integers(config.session_length[0], config.session_length[1] + 1)):
                noise = rng.random() < config.noise_rate
                if noise:
                    cat, rank = rng.integers(C), rng.integers(P)
                else:
                    cat = focus if rng.random() < config.focus_weight else rng.choice(C, p=long_term)
                    rank = rng.choice(P, p=zipf)
                rows["user"].append(user)
                rows["item"].append(int(cat) * P + int(rank))
                rows["cat"].append(int(cat))
                rows["timestamp"].append(now)
                rows["target_ok"].append(not noise)
                now += int(rng.integers(30, 300))
            now += int(rng.integers(3_600, 86_400 * 2))  # The gap that closes the session.
    return behaviors.Behaviours(**{k: np.array(v) for k, v in rows.items()})


class Builder(BehaviourCtrBuilder):
    """Synthetic users with planted long-term and drifting short-term interests, and noise clicks."""

    BUILDER_CONFIGS = [
        SyntheticConfig(name=f"noise_{pct}", description=f"{pct} % noise clicks", noise_rate=pct / 100)
        for pct in (0, 10, 20, 30, 50)
    ] + [
        SyntheticConfig(
            name="smoke", description="A tiny population for tests and smoke runs (no noise).",
            num_users=150, sessions_per_user=8,
            spec=behaviors.SequenceSpec(max_long=12, num_sessions=2, session_len=4)),
    ]
    DEFAULT_CONFIG_NAME = "noise_0"
    RELEASE_NOTES = {"1.0.0": "Planted interests with a noise-click rate per config."}

    def read_behaviours(self, dl_manager):
        return generate(self.builder_config)
