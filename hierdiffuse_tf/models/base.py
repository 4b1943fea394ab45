"""`CTRModel`: the base of every model in the registry, with the custom `train_step`.

A model implements one hook, `forward(features, training) -> Forward`: the
logit plus any auxiliary loss and the values to log. This class owns what is
shared: `call` (returns `{"ctr", "logit"}`, the serving outputs), the
TensorFlow `train_step` / `test_step`, the metrics (every loss term plus
`keras.metrics.AUC`), and `.keras` serialisation from the model's config.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import keras
import numpy as np
from keras import ops

from hierdiffuse_tf import distribute, xla_random
from hierdiffuse_tf.config import ModelConfig
from hierdiffuse_tf.data import behaviors

MODEL_FEATURES = ("target_item", "target_cat", "long_items", "long_cats", "long_popular",
                  "short_items", "short_cats", "short_popular")


@dataclasses.dataclass
class Forward:
    """What `CTRModel.forward` returns.

    Attributes:
        logit: `(B,)` logits.
        aux_loss: scalar added to the BCE (already weighted), or 0.
        logs: scalars to report, keyed by the names of `CTRModel.logged(config)`.
    """

    logit: Any
    aux_loss: Any = 0.0
    logs: dict = dataclasses.field(default_factory=dict)


def feature_shapes(config: ModelConfig) -> dict[str, tuple]:
    """Per-example shapes of the features every model reads (`MODEL_FEATURES`: the SPEC 1
    behaviour and target features, with the pipeline's popularity flags)."""
    shapes = behaviors.feature_shapes(config)
    return {k: shapes[k] for k in MODEL_FEATURES}


def example_features(config: ModelConfig, batch: int, seed: int = 0,
                     session_share: float | None = None) -> dict:
    """Plausible int64 features (numpy) for warm-up, benchmarks and smoke tests.

    Every behaviour slot holds a random id (0, padding, is as rare as any id).
    With `session_share`, each short-term session holds behaviours with that
    probability and is empty otherwise, as in real data (ml-100k's training
    sessions: 40 % hold a behaviour; docs/performance.md), where a model's cost
    can depend on it (HierDiffuse's `skip_empty_sessions`).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in feature_shapes(config).items():
        high = 2 if name.endswith("popular") else (config.num_cats if "cat" in name else config.item_vocab)
        out[name] = rng.integers(0, max(high, 2), size=(batch,) + shape).astype(np.int64)
    if session_share is not None:
        kept = rng.random((batch, config.num_sessions, 1)) < session_share
        out.update({name: np.where(kept, out[name], 0) for name in out if name.startswith("short_")})
    return out


class CTRModel(keras.Model, abc.ABC):
    """Base class of the CTR models.

    Args:
        config: the model's config dataclass (`config_cls`).
        **kwargs: base model arguments (`name`).

    Call arguments:
        features: dict of int tensors with the shapes of `feature_shapes`.
        training: bool.

    Returns:
        `{"ctr": (B,) probabilities, "logit": (B,) logits}`.
    """

    config_cls: type[ModelConfig] = ModelConfig
    log_names: tuple[str, ...] = ()
    # XLA (`jit_compile`) where it measured faster on CPU (`hierdiffuse bench xla`,
    # docs/performance.md). Scoring is faster under XLA for every model; training is for
    # all but DIEN (its GRUs), once dropout draws with ThreeFry under XLA (`xla_random`).
    jit_train: bool = False
    jit_predict: bool = True

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(config, self.config_cls):
            raise TypeError(f"{type(self).__name__} needs a {self.config_cls.__name__}, "
                            f"got {type(config).__name__}")
        if config.num_hash_buckets == 0 and config.num_items < 3:
            raise ValueError("`num_items` must be set (>= 3) from the dataset's vocabulary. "
                             f"Received: `num_items={config.num_items}`")
        if config.num_cats < 2:  # Every model's tables, FeatureEmbedding's or keras-rs's (Avg-Pool).
            raise ValueError("`num_cats` must be set (>= 2) from the dataset's vocabulary. "
                             f"Received: `num_cats={config.num_cats}`")
        self.config = config
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.bce_tracker = keras.metrics.Mean(name="bce")
        self.auc_metric = keras.metrics.AUC(name="auc", from_logits=True)
        self.log_trackers = {name: keras.metrics.Mean(name=name) for name in self.logged(config)}

    @classmethod
    def logged(cls, config) -> tuple[str, ...]:
        """The names `forward` logs in training with this config: `log_names` by default."""
        return cls.log_names

    @abc.abstractmethod
    def forward(self, features: dict, training: bool = False, labels=None) -> Forward:
        """Computes the logit (and in training the auxiliary losses) of a batch.

        `labels` (`(B,)`, training only) is there for models whose auxiliary
        loss learns from the clicked items alone (DiffuRec, DreamRec).
        """

    def build(self, features_shape=None):
        # Sublayers build themselves on the first call, from the real shapes.
        self.built = True

    def call(self, features, training=False):
        return self.outputs_of(self.forward(features, training=training).logit)

    @staticmethod
    def outputs_of(logit) -> dict:
        """The serving outputs `{"ctr", "logit"}` of `(B,)` logits, float32 under a mixed policy too."""
        logit = ops.cast(logit, "float32")
        return {"ctr": ops.sigmoid(logit), "logit": logit}

    # Training: TensorFlow at the edge, the math stays in `forward`.

    @property
    def metrics(self):
        return [self.loss_tracker, self.bce_tracker, self.auc_metric,
                *self.log_trackers.values()]

    @staticmethod
    def bce(labels, logits):
        """Mean binary cross-entropy, in float32 (under a mixed policy the logits are not)."""
        logits = ops.cast(logits, "float32")
        labels = ops.cast(ops.reshape(labels, (-1,)), "float32")
        return ops.mean(ops.binary_crossentropy(labels, logits, from_logits=True))

    def schedule_step(self):
        """The optimizer's step counter, which drives every schedule (0 before compile)."""
        if getattr(self, "optimizer", None) is None:
            return ops.zeros((), "int64")
        return self.optimizer.iterations

    def make_train_function(self, force=False):
        """Keras' `make_train_function`, after the weights and the optimizer's slots are built.

        A training step that creates variables is traced twice, and Keras builds the
        optimizer inside the first trace where no distribution strategy is set; built
        here, `fit` traces the step once (docs/performance.md, "The first `fit` traces its
        step once"). `compile` is left to Keras: a custom one is skipped when a `.keras`
        file is loaded.
        """
        with self.distribute_strategy.scope():
            if not all(layer.built for layer in self._flatten_layers()):
                # One inference call builds every weight: the training-only layers build
                # on creation (`pair_scorer`). `build` alone marks this model built, not its layers.
                self(self.example_inputs(), training=False)
            self.optimizer.build(self.trainable_variables)
        return super().make_train_function(force)

    def train_step(self, data):
        import tensorflow as tf  # The TensorFlow edge: the model math above is backend-neutral.

        features, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        # Under XLA, dropout and the diffusion noise draw with ThreeFry (`xla_random`).
        with tf.GradientTape() as tape, xla_random.inside_xla(bool(self.jit_compile)):
            out = self.forward(features, training=True, labels=labels)
            bce = self.bce(labels, out.logit)
            loss = bce + ops.cast(out.aux_loss, "float32")  # This replica's mean over its rows.
            # Replicas' gradients are summed: scale so the sum is the global mean's. Then the
            # optimizer's loss scale, as Keras' own step does (a `LossScaleOptimizer` under
            # mixed_float16 divides the gradients by it; any other optimizer returns the loss).
            scaled = self.optimizer.scale_loss(distribute.scale_for_replicas(loss))
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self._update_metrics(loss, bce, labels, out)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        """Evaluation logs `loss` = `bce`: the auxiliary losses are training signals, so
        `val_loss` is the BCE alone, while the training `loss` adds `aux_loss`. Compare
        `bce` with `val_bce`, and monitor `val_auc` or `val_bce`."""
        features, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        out = self.forward(features, training=False)
        bce = self.bce(labels, out.logit)
        self._update_metrics(bce, bce, labels, out)
        return {m.name: m.result() for m in (self.loss_tracker, self.bce_tracker, self.auc_metric)}

    def _update_metrics(self, loss, bce, labels, out: Forward):
        self.loss_tracker.update_state(loss)
        self.bce_tracker.update_state(bce)
        self.auc_metric.update_state(ops.reshape(labels, (-1,)), out.logit)
        for name, value in out.logs.items():
            self.log_trackers[name].update_state(value)

    # Serialisation: the config dataclass is the whole config.

    def example_inputs(self, batch_size: int = 2) -> dict:
        """A batch of padding with the right shapes, used to build the weights."""
        return {k: ops.zeros((batch_size,) + s, "int32")
                for k, s in feature_shapes(self.config).items()}

    def get_config(self):
        return {"name": self.name, "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        # A model saved before a config field existed reloads with the value it was trained with.
        return cls(cls.config_cls.from_saved(config["config"]), name=config.get("name"))

    def get_build_config(self):
        return {"built": True}

    def build_from_config(self, config):
        self(self.example_inputs(), training=False)
