"""Configs are data: frozen dataclasses, validated when they are built.

Every switch of SPEC section 2 is a field here with a default. Ablations are
values of these fields, never copies of a model. Configs round-trip through
plain dicts (`to_dict` / `from_dict`), which is what `model.keras`,
`config.json` and `--config FILE` store, and `--set key=value` overrides any
field by name.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import typing
from typing import Any, Mapping, Sequence

from hierdiffuse_tf.errors import HierDiffuseError

DIRECTIONS = ("long_to_short", "short_to_long", "long_to_none", "short_to_none")
GUIDANCES = ("sgd", "cfg", "none")
SAMPLERS = ("tcc", "ddim", "ddpm", "none")
CFG_TRAININGS = ("guided", "conditional")
LOSS_REDUCTIONS = ("mean", "sum")
BACKBONES = ("mlp", "transformer")
SGD_WEIGHTS = ("adaptive", "fixed")
READOUTS = ("target_attention", "mean")
COMBINERS = ("sum", "concat")
STRATEGIES = ("none", "mirrored", "multi_worker")


class ConfigError(HierDiffuseError):
    """A config value or key is invalid; the message names the field."""


def _check(condition: bool, field: str, problem: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"`{field}` {problem}. Received: `{field}={value!r}`")


def _at_least_one(config, *fields: str) -> None:
    """Each of `config`'s `fields` must be >= 1; the error names the first that is not."""
    for field in fields:
        _check(getattr(config, field) >= 1, field, "must be >= 1", getattr(config, field))


def _one_of(field: str, value: Any, allowed: Sequence[str]) -> None:
    _check(value in allowed, field, f"must be one of {list(allowed)}", value)


@dataclasses.dataclass(frozen=True)
class BaseConfig:
    """Helpers shared by every config dataclass."""

    # Fields added after configs were saved, with the value that the code used
    # before each field existed: a saved config that lacks one ran with it.
    LEGACY_DEFAULTS: typing.ClassVar[dict[str, Any]] = {}
    # Fields that configs saved earlier may carry and this class no longer has: dropped
    # on loading (say, the shared baseline config's fields that a model never read).
    RETIRED_FIELDS: typing.ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
            for f in dataclasses.fields(self)
        }

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]):
        unknown = [k for k in values if k not in cls.field_names()]
        if unknown:
            raise ConfigError(unknown_key_message(unknown[0], cls.field_names(), cls.__name__))
        hints = typing.get_type_hints(cls)
        coerced = {
            k: tuple(v) if isinstance(v, list) and "tuple" in str(hints[k]) else v
            for k, v in values.items()
        }
        return cls(**coerced)

    @classmethod
    def from_saved(cls, values: Mapping[str, Any]):
        """`from_dict` for a config saved earlier: missing fields take their legacy values,
        and retired fields are dropped."""
        own = set(cls.field_names())
        kept = {k: v for k, v in values.items() if k in own or k not in cls.RETIRED_FIELDS}
        return cls.from_dict({**cls.LEGACY_DEFAULTS, **kept})

    def replace(self, **changes):
        return self.from_dict({**self.to_dict(), **changes})


def unknown_key_message(key: str, known: Sequence[str], where: str) -> str:
    close = difflib.get_close_matches(key, known, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"Unknown config key {key!r} for {where}.{hint} Known keys: {sorted(known)}"


# Until each baseline family had its own config, one shared `BaselineConfig`
# carried all of these; a baseline's saved config may still hold them.
SHARED_BASELINE_FIELDS = frozenset({
    "encoder_layers", "encoder_heads", "encoder_ffn_dim", "diffusion_steps", "sampler_steps",
    "denoiser_units", "time_embed_dim", "cfg_scale", "cond_dropout", "attention_units",
    "aux_loss_weight", "recon_weight"})


@dataclasses.dataclass(frozen=True)
class ModelConfig(BaseConfig):
    """Fields every CTR model in the registry shares (features, embeddings, head).

    Avg-Pool DNN takes these alone; each other model family has a subclass
    with its own fields (`DINConfig`, `DIENConfig`, `DreamRecConfig`, `DiffuRecConfig`,
    `HierDiffuseConfig`).

    Args:
        num_items: item vocabulary size, including 0 (padding) and 1 (OOV).
        num_cats: category vocabulary size, including 0 and 1.
        max_long: M, the long-term sequence length.
        num_sessions: K, the number of short-term sessions.
        session_len: N, the behaviours kept per session.
        embed_dim: d, the width of every behaviour and interest vector.
        embed_combiner: how item and category embeddings form one vector:
            "sum" (two tables of width d) or "concat" (two of width d/2).
        dropout: dropout rate in encoders and head.
        head_units: hidden widths of the CTR head MLP.
        head_cross_layers: keras-rs `FeatureCross` (DCN) layers before the head
            MLP. 0 keeps the plain MLP of SPEC 2.
        num_hash_buckets: if > 0, item ids are hashed into this many buckets
            (for very large vocabularies); 0 uses the ids as they are.
    """

    RETIRED_FIELDS: typing.ClassVar[frozenset[str]] = SHARED_BASELINE_FIELDS

    num_items: int = 0
    num_cats: int = 0
    max_long: int = 100
    num_sessions: int = 4
    session_len: int = 10
    embed_dim: int = 32
    embed_combiner: str = "sum"
    dropout: float = 0.1
    head_units: tuple[int, ...] = (64, 32)
    head_cross_layers: int = 0
    num_hash_buckets: int = 0

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        _check(self.num_items >= 0, "num_items", "must be >= 0", self.num_items)
        _check(self.num_cats >= 0, "num_cats", "must be >= 0", self.num_cats)
        _at_least_one(self, "max_long", "num_sessions", "session_len", "embed_dim")
        _one_of("embed_combiner", self.embed_combiner, COMBINERS)
        if self.embed_combiner == "concat":
            _check(self.embed_dim % 2 == 0, "embed_dim", "must be even with embed_combiner='concat'",
                   self.embed_dim)
        _check(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)", self.dropout)
        _check(all(u >= 1 for u in self.head_units), "head_units", "must be positive widths",
               self.head_units)
        _check(self.head_cross_layers >= 0, "head_cross_layers", "must be >= 0",
               self.head_cross_layers)
        _check(self.num_hash_buckets >= 0, "num_hash_buckets", "must be >= 0",
               self.num_hash_buckets)

    @property
    def item_vocab(self) -> int:
        return self.num_hash_buckets + 2 if self.num_hash_buckets else self.num_items


@dataclasses.dataclass(frozen=True)
class SequenceDiffusionConfig(ModelConfig):
    """Fields shared by the models with transformer encoders and a diffusion stage
    (HierDiffuse, DiffuRec, DreamRec).

    Args:
        encoder_layers: transformer blocks per encoder (0: none, the
            position-embedded behaviours as they are).
        encoder_heads: attention heads per block (in HierDiffuse, also the
            transformer denoiser's, `backbone="transformer"`).
        encoder_ffn_dim: feed-forward width of each block.
        diffusion_steps: T of the cosine schedule (Eq. 10-11).
        sampler_steps: steps of the DDIM path.
    """

    encoder_layers: int = 1
    encoder_heads: int = 2
    encoder_ffn_dim: int = 64
    diffusion_steps: int = 100
    sampler_steps: int = 10

    def validate(self) -> None:
        super().validate()
        _at_least_one(self, "encoder_heads", "encoder_ffn_dim", "sampler_steps")
        _check(self.encoder_layers >= 0, "encoder_layers", "must be >= 0 (0: no transformer block)",
               self.encoder_layers)
        _check(self.embed_dim % self.encoder_heads == 0, "encoder_heads",
               f"must divide embed_dim={self.embed_dim}", self.encoder_heads)
        _check(self.diffusion_steps >= 2, "diffusion_steps", "must be >= 2", self.diffusion_steps)


@dataclasses.dataclass(frozen=True)
class GuidedDiffusionConfig(SequenceDiffusionConfig):
    """The fields of a guided denoiser (a `GuidedDenoiser` over an MLP or transformer
    denoiser), which HierDiffuse and DreamRec have and DiffuRec does not.

    Args:
        denoiser_units: hidden width of the denoiser.
        denoiser_layers: its hidden layers (MLP) or blocks (transformer).
        time_embed_dim: width of the sinusoidal time embedding.
        cfg_scale: w of classifier-free guidance, (1 + w) f(c) - w f(null).
        cond_dropout: probability that each condition is replaced by the
            learned null vector in training.
    """

    denoiser_units: int = 128
    denoiser_layers: int = 2
    time_embed_dim: int = 32
    cfg_scale: float = 1.0
    cond_dropout: float = 0.1

    def validate(self) -> None:
        super().validate()
        _at_least_one(self, "denoiser_units", "denoiser_layers")
        _check(self.time_embed_dim >= 2, "time_embed_dim", "must be >= 2 (a sine and a cosine)",
               self.time_embed_dim)
        _check(self.cfg_scale >= 0.0, "cfg_scale", "must be >= 0", self.cfg_scale)
        _check(0.0 <= self.cond_dropout < 1.0, "cond_dropout", "must be in [0, 1)",
               self.cond_dropout)


# The guided denoiser's own fields (DiffuRec's configs carried them until 2026-12-06).
GUIDED_DENOISER_FIELDS = frozenset(GuidedDiffusionConfig.field_names()) - frozenset(
    SequenceDiffusionConfig.field_names())


@dataclasses.dataclass(frozen=True)
class HierDiffuseConfig(GuidedDiffusionConfig):
    """Every switch of HierDiffuse (SPEC 2), with the default model of SPEC 2b.

    The defaults are the paper's structure made to work (SPEC 2b: the
    target-aware readout, the gated encoders, x0 normalisation, the head's
    `h_S * e_t` cross, and the head trained on the eps = 0 point). The model
    as SPEC 2 first wrote it is `PAPER_AS_PRINTED` (the packaged config file
    `hierdiffuse_paper`): `readout="mean"`, `encoder_gate=False`,
    `normalize_x0=False`, `head_short_cross=False`, `head_on_clean=False`,
    `session_recency=False`, `readout_recency=False`, `long_encoder_layers=-1`
    (f_L's transformer blocks).

    Takes the `GuidedDiffusionConfig` fields (encoders, T, DDIM steps, the
    denoiser's width and depth, CFG scale, condition dropout), two of them
    with narrower defaults than the baselines': `encoder_heads=1` (f_S's one
    block) and `denoiser_units=64`. Each makes the training step cheaper, and
    together they scored 0.8914 ± 0.0003 validation AUC on ml-100k against
    0.8904 ± 0.0009 with 2 heads and 128 units (3 seeds, the same seeds;
    docs/performance.md). `readout_units` is 16 (against DIN's 36) for the
    same reason: 0.8912 ± 0.0019 against 0.8914 ± 0.0003 with 36. Each
    difference is within a seed spread: the same accuracy, not a gain. And these:

    Args:
        schedule_s: the offset s of Eq. 10.
        max_beta: betas are clipped to at most this value.
        t_star: the start step of the fusion (Eq. 1). 0 means T // 2.
        direction: what is diffused and what guides it (Table 2e):
            "long_to_short" (x0 = h_L, guided by short-term),
            "short_to_long", "long_to_none", "short_to_none".
        guidance: "sgd" (Eq. 6), "cfg" (standard classifier-free guidance) or
            "none" (the plain conditional denoiser) (Table 2a).
        sgd_weights: "adaptive" (w_i = softplus(g_i([y_i, share_i]))) or
            "fixed" (w_i = sgd_fixed_w[i]).
        sgd_fixed_w: the fixed SGD weights (w1, w2).
        backbone: the denoiser: "mlp" or "transformer" (Table 2b).
        alpha: weight of the diffusion losses against the BCE.
        loss_reduction: how L_recon and L_TR reduce a vector's squared error:
            "mean" over its d dimensions (the default, as in our DiffuRec and
            DreamRec) or "sum", SPEC's squared norm, d times larger. A
            documented deviation: at alpha = 0.5 the summed losses outweigh
            the BCE and cost validation AUC on ml-100k (see docs/experiments.md, "What we tried").
        use_recon: keep L_recon (Table 2c).
        use_tr: keep L_TR (Table 2c).
        lambda_start: lambda of L_TR at step 0.
        lambda_end: lambda of L_TR at `schedule_steps`.
        schedule_steps: training steps over which lambda decays and the dt
            curriculum runs; `hierdiffuse train` sets it to epochs x steps.
        curriculum_switch: fraction of `schedule_steps` spent with small spans
            (dt <= dt_small * T) before dt ~ U(dt_small * T, dt_large * T).
        dt_small: the small-span limit, as a fraction of T.
        dt_large: the upper end of the medium spans, as a fraction of T.
        stop_gradient_x0: diffusion losses treat x0 as a fixed target, so the
            encoders are not pulled towards vectors that are easy to denoise.
        normalize_x0: layer-normalise x0 (h_L for Long->Short) before it is
            noised, so its per-dimension scale matches the unit-variance noise.
            Without it x0 is about 10 times smaller than the noise at t*, and
            the denoiser learns a near-constant output (docs/model-quality.md).
        readout: how tokens become interest vectors (h_L, each session's
            h_S_k, the SGD groups): "target_attention" (a DIN activation unit
            whose weights are `1 + score`, divided by the count, so it starts
            as the masked mean) or "mean" (the paper's masked mean pooling).
        readout_units: hidden widths of the readout's activation unit.
        readout_recency: the target readouts add a learned bias per position
            (a recency: sequences are newest last) to each score, starting at 0.
            On by default: on ml-100k validation it was the largest single gain
            (docs/model-quality.md).
        encoder_gate: ReZero-gate both encoders, `e + g (T(e + pos) - e)`
            with g starting at 0.
        head_short_cross: the head also reads `h_S * e_target`.
        head_on_clean: in training the head reads h_fusion from the eps = 0
            point, as at inference; the TCC losses stay on noisy points. Off:
            the head reads a noisy x_{t*} in training (the paper's Eq. 1).
        long_encoder_layers: transformer blocks of f_L; -1 takes
            `encoder_layers`, 0 keeps no block (f_L is the position-embedded
            behaviours, which the target readout pools). 0 by default: on
            ml-100k it scored the same validation AUC as the transformer
            (0.8828 against 0.8827, seed 0) and trains about twice as fast;
            the transformer's learned gate had stayed near 0.03
            (docs/model-quality.md).
        long_chunk: if > 0, f_L's blocks attend within chunks of this many
            long-term behaviours (the oldest one shorter where it does not
            divide max_long); 0 attends over the whole sequence (the paper's
            f_L). See docs/performance.md.
        next_behaviour_weight: weight of DIEN's auxiliary loss on the
            behaviour embeddings (long then short, oldest first): the mean
            of the behaviours up to t must tell e_{t+1} from another row's
            (`layers/next_behaviour.py`). 0 (the default) leaves it out.
        skip_empty_sessions: in training, f_S's transformer block runs over
            the half of a batch's sessions that holds a behaviour whenever
            they fit there (about 60 % of the sessions are empty), and over
            all of them otherwise (`SequenceEncoder(skip_empty=True)`). The
            outputs are the same; f_S's dropout masks are drawn over fewer
            rows. The training step needs a static batch size for it, which
            `drop_remainder` (TrainConfig) gives. Scoring runs the block over
            every session.
        session_recency: add a learned embedding of each session's recency
            (0 = the most recent) to its vector h_S_k before Eq. 3's mean.
        sampler: the inference path: "tcc" (one step), "ddim" or "ddpm" (Table 2d);
            "none" skips the fusion stage (h_fusion = x0): the floor that the
            benchmark compares against, and, set for training, the model
            without diffusion (Table 2f; no TCC losses).
    """

    RETIRED_FIELDS: typing.ClassVar[frozenset[str]] = frozenset()  # It never had the baselines'.
    LEGACY_DEFAULTS: typing.ClassVar[dict[str, Any]] = {
        "loss_reduction": "sum", "readout": "mean", "encoder_gate": False,
        "head_short_cross": False, "head_on_clean": False, "session_recency": False,
        "long_encoder_layers": -1, "long_chunk": 0, "readout_recency": False,
        "skip_empty_sessions": False}

    encoder_heads: int = 1
    denoiser_units: int = 64
    schedule_s: float = 0.008
    max_beta: float = 0.999
    t_star: int = 0
    direction: str = "long_to_short"
    guidance: str = "sgd"
    sgd_weights: str = "adaptive"
    sgd_fixed_w: tuple[float, float] = (0.5, 0.5)
    backbone: str = "mlp"
    alpha: float = 0.5
    loss_reduction: str = "mean"
    use_recon: bool = True
    use_tr: bool = True
    lambda_start: float = 1.0
    lambda_end: float = 0.2
    schedule_steps: int = 10_000
    curriculum_switch: float = 0.3
    dt_small: float = 0.1
    dt_large: float = 0.5
    stop_gradient_x0: bool = True
    normalize_x0: bool = True
    readout: str = "target_attention"
    readout_units: tuple[int, ...] = (16,)
    readout_recency: bool = True
    encoder_gate: bool = True
    head_short_cross: bool = True
    head_on_clean: bool = True
    session_recency: bool = False
    skip_empty_sessions: bool = True
    next_behaviour_weight: float = 0.0
    long_encoder_layers: int = 0
    long_chunk: int = 0
    sampler: str = "tcc"

    def validate(self) -> None:
        super().validate()
        _at_least_one(self, "schedule_steps")
        _check(0.0 <= self.schedule_s < 1.0, "schedule_s", "must be in [0, 1)", self.schedule_s)
        _check(0.0 < self.max_beta < 1.0, "max_beta", "must be in (0, 1)", self.max_beta)
        _check(0 <= self.t_star <= self.diffusion_steps, "t_star",
               f"must be in [0, diffusion_steps={self.diffusion_steps}] (0 means T // 2)",
               self.t_star)
        _one_of("direction", self.direction, DIRECTIONS)
        _one_of("guidance", self.guidance, GUIDANCES)
        _one_of("sgd_weights", self.sgd_weights, SGD_WEIGHTS)
        _one_of("backbone", self.backbone, BACKBONES)
        _one_of("sampler", self.sampler, SAMPLERS)
        _one_of("loss_reduction", self.loss_reduction, LOSS_REDUCTIONS)
        _one_of("readout", self.readout, READOUTS)
        _check(self.long_encoder_layers >= -1, "long_encoder_layers",
               "must be -1 (encoder_layers) or >= 0", self.long_encoder_layers)
        _check(self.long_chunk >= 0, "long_chunk", "must be >= 0", self.long_chunk)
        _check(all(u >= 1 for u in self.readout_units), "readout_units", "must be positive widths",
               self.readout_units)
        _check(len(self.sgd_fixed_w) == 2, "sgd_fixed_w", "must have two weights (w1, w2)",
               self.sgd_fixed_w)
        _check(self.alpha >= 0.0, "alpha", "must be >= 0", self.alpha)
        _check(self.next_behaviour_weight >= 0.0, "next_behaviour_weight", "must be >= 0",
               self.next_behaviour_weight)
        _check(0.0 <= self.curriculum_switch <= 1.0, "curriculum_switch", "must be in [0, 1]",
               self.curriculum_switch)
        _check(0.0 < self.dt_small <= 1.0, "dt_small", "must be in (0, 1]", self.dt_small)
        _check(self.dt_small <= self.dt_large <= 1.0, "dt_large",
               f"must be in [dt_small={self.dt_small}, 1]", self.dt_large)
        for field in ("lambda_start", "lambda_end"):  # L_TR's weight: negative, the loss is unbounded.
            _check(getattr(self, field) >= 0.0, field, "must be >= 0", getattr(self, field))
        _check(self.sampler_steps <= self.start_step, "sampler_steps",
               f"must be <= the start step t*={self.start_step}", self.sampler_steps)

    @property
    def start_step(self) -> int:
        """t*, the step the fusion starts from."""
        return self.t_star or self.diffusion_steps // 2


# The model as SPEC 2 first wrote it (the paper as printed), beside the SPEC 2b default.
PAPER_AS_PRINTED = {"readout": "mean", "encoder_gate": False, "normalize_x0": False,
                    "head_short_cross": False, "head_on_clean": False, "session_recency": False,
                    "readout_recency": False,
                    "long_encoder_layers": -1}


@dataclasses.dataclass(frozen=True)
class DINConfig(ModelConfig):
    """DIN (SPEC 3): the `ModelConfig` fields and its activation unit.

    Args:
        attention_units: hidden widths of DIN's activation unit.
        attention_normalize: divide the attention-pooled vector by the count of
            behaviours (False: DIN's sum, as published; docs/experiments.md
            measures both on ml-100k).
    """

    attention_units: tuple[int, ...] = (36,)
    attention_normalize: bool = False

    def validate(self) -> None:
        super().validate()
        _check(all(u >= 1 for u in self.attention_units), "attention_units",
               "must be positive widths", self.attention_units)


@dataclasses.dataclass(frozen=True)
class DIENConfig(ModelConfig):
    """DIEN (SPEC 3): the `ModelConfig` fields and its auxiliary loss.

    Args:
        aux_loss_weight: weight of DIEN's auxiliary (next-behaviour) loss.
    """

    aux_loss_weight: float = 1.0

    def validate(self) -> None:
        super().validate()
        _check(self.aux_loss_weight >= 0, "aux_loss_weight", "must be >= 0", self.aux_loss_weight)


@dataclasses.dataclass(frozen=True)
class TargetDiffusionConfig(SequenceDiffusionConfig):
    """What DiffuRec and DreamRec (SPEC 3), diffusion that generates the target side, share:
    the `SequenceDiffusionConfig` fields (the sequence transformer, T, the DDIM steps) and
    the one below.

    Args:
        recon_weight: weight of the diffusion reconstruction loss.
        encoder_chunk: if > 0, the sequence transformer's blocks attend within
            consecutive chunks of this many behaviours (the oldest one
            shorter where it does not divide the sequence's length); 0, the
            default, attends over the whole sequence, as configs saved before
            the field did.
        encoder_attention_dropout: whether the sequence transformer drops out
            its attention probabilities at the `dropout` rate, as keras-hub's
            block does and configs saved before the field did. False keeps
            its other dropouts and makes the step about a quarter cheaper under
            XLA on CPU. DreamRec keeps True (False cost it 0.0024 validation
            AUC on ml-100k); DiffuRec's default is False (`DiffuRecConfig`).
    """

    recon_weight: float = 0.5
    encoder_chunk: int = 0
    encoder_attention_dropout: bool = True

    def validate(self) -> None:
        super().validate()
        _check(self.encoder_chunk >= 0, "encoder_chunk", "must be >= 0", self.encoder_chunk)
        _check(self.sampler_steps <= self.diffusion_steps, "sampler_steps",
               f"must be <= diffusion_steps={self.diffusion_steps}", self.sampler_steps)
        _check(self.recon_weight >= 0, "recon_weight", "must be >= 0", self.recon_weight)


@dataclasses.dataclass(frozen=True)
class DreamRecConfig(TargetDiffusionConfig, GuidedDiffusionConfig):
    """DreamRec (SPEC 3): the `TargetDiffusionConfig` fields and those of its guided MLP
    denoiser (`GuidedDiffusionConfig`: width, depth, time embedding, CFG scale, condition
    dropout).

    Args:
        cfg_training: what the reconstruction loss fits. "guided" (the
            default, which every committed table trained): the CFG mix
            `(1 + w) f(c) - w f(null)` that the sampler uses. "conditional":
            DreamRec's own training, `f(c)` alone, with the condition
            dropout; the mix is then used only to generate (the sampler, and
            the head's one-step generation in training).
    """

    # DreamRec's denoiser had two hidden layers before `denoiser_layers` existed.
    LEGACY_DEFAULTS: typing.ClassVar[dict[str, Any]] = {"denoiser_layers": 2}

    cfg_training: str = "guided"

    def validate(self) -> None:
        super().validate()
        _one_of("cfg_training", self.cfg_training, CFG_TRAININGS)


DIFFUREC_DENOISERS = ("cross_attention", "sequence")


@dataclasses.dataclass(frozen=True)
class DiffuRecConfig(TargetDiffusionConfig):
    """DiffuRec (SPEC 3): the `TargetDiffusionConfig` fields and its denoiser.

    Its configs saved before 2026-12-06 also carry DreamRec's denoiser fields, which
    it never read (`GUIDED_DENOISER_FIELDS`): they are dropped on loading (`RETIRED_FIELDS`).

    Args:
        denoiser: how the noisy target meets the behaviour sequence.
            "cross_attention" (the default): x_t, with its step embedding,
            is one query token that attends over the encoder's tokens in
            `encoder_layers` (at least one) keras-hub `TransformerDecoder` blocks. The
            sequence is encoded once per call, so a training step runs one
            transformer over the L behaviours instead of three, and a
            sampler step costs one query instead of a pass over L tokens.
            "sequence": DiffuRec's own approximator, a transformer over the
            encoded sequence with x_t added to every token, whose newest
            token predicts x0 (the model before this switch; saved configs
            without the field load as it). See docs/experiments.md.
        encoder_attention_dropout: as in `TargetDiffusionConfig`, but False
            by default since 2026-12-07: without it DiffuRec's validation AUC
            on ml-100k was the same at `dropout=0.1` (0.8822 +/- 0.0010
            against 0.8817 +/- 0.0015, 3 seeds) and its training step 22 % cheaper
            (docs/experiments.md). Saved configs without the field load as
            True, as they trained.
    """

    LEGACY_DEFAULTS: typing.ClassVar[dict[str, Any]] = {"denoiser": "sequence",
                                                        "encoder_attention_dropout": True}
    RETIRED_FIELDS: typing.ClassVar[frozenset[str]] = ModelConfig.RETIRED_FIELDS | GUIDED_DENOISER_FIELDS

    denoiser: str = "cross_attention"
    encoder_attention_dropout: bool = False

    def validate(self) -> None:
        super().validate()
        _one_of("denoiser", self.denoiser, DIFFUREC_DENOISERS)


@dataclasses.dataclass(frozen=True)
class TrainConfig(BaseConfig):
    """How `hierdiffuse train` fits a model.

    Args:
        epochs: passes over the training split.
        batch_size: global batch size.
        learning_rate: Adam learning rate.
        clipnorm: Keras `clipnorm`: each variable's gradient is clipped to this
            norm on its own (not the global norm); 0 disables it.
        seed: seeds weights, dropout, diffusion noise and shuffling.
        shuffle_buffer: examples held by the shuffle buffer.
        strategy: "none", "mirrored" or "multi_worker" (`tf.distribute`).
        patience: early stopping on validation AUC. 0 trains every epoch
            and keeps the last epoch's weights; N > 0 stops once N epochs in
            a row have not beaten the best validation AUC, and keeps (saves,
            evaluates) the best epoch's weights. `metrics.json` records
            `best_epoch` either way.
        drop_remainder: leave out each epoch's short last training batch (fewer
            than `batch_size` examples, a different few each epoch), so that every
            training step has one static shape: XLA compiles the step once,
            not twice, and HierDiffuse's `skip_empty_sessions` applies.
            Validation and test read every example either way.
    """

    LEGACY_DEFAULTS: typing.ClassVar[dict[str, Any]] = {"patience": 0, "drop_remainder": False}

    epochs: int = 2
    batch_size: int = 256
    learning_rate: float = 1e-3
    clipnorm: float = 1.0
    seed: int = 0
    shuffle_buffer: int = 50_000
    strategy: str = "none"
    patience: int = 0
    drop_remainder: bool = True

    def __post_init__(self):
        _at_least_one(self, "epochs", "batch_size")
        _check(self.learning_rate > 0, "learning_rate", "must be > 0", self.learning_rate)
        _check(self.clipnorm >= 0, "clipnorm", "must be >= 0", self.clipnorm)
        _at_least_one(self, "shuffle_buffer")
        _one_of("strategy", self.strategy, STRATEGIES)
        _check(self.patience >= 0, "patience", "must be >= 0", self.patience)


def parse_value(text: str, annotation: str) -> Any:
    """Parses the text of `--set key=value` by the field's type annotation."""
    if "tuple" in annotation:
        return tuple(parse_value(p, annotation.split("[")[1]) for p in text.split(",") if p)
    if annotation.startswith("bool"):
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise ConfigError(f"Expected true or false, got {text!r}")
        return lowered in ("true", "1")
    if annotation.startswith("int"):
        return int(text)
    if annotation.startswith("float"):
        return float(text)
    return text


def _type_names(cls) -> dict[str, str]:
    """Field name -> type as text ("int", "tuple[float, float]", ...)."""
    return {k: v.__name__ if isinstance(v, type) else str(v)
            for k, v in typing.get_type_hints(cls).items()}


def override_key(pair: str) -> str:
    """The field a `key=value` override names."""
    return pair.split("=", 1)[0].strip()


def apply_overrides(
    model_values: dict[str, Any],
    train_values: dict[str, Any],
    model_cls: type[BaseConfig],
    pairs: Sequence[str],
) -> None:
    """Applies `key=value` strings in place to the model or the train values."""
    model_hints = _type_names(model_cls)
    train_hints = _type_names(TrainConfig)
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"`--set` expects key=value. Received: {pair!r}")
        key, text = (part.strip() for part in pair.split("=", 1))
        if key in model_hints:
            target, hints = model_values, model_hints
        elif key in train_hints:
            target, hints = train_values, train_hints
        else:
            raise ConfigError(unknown_key_message(
                key, list(model_hints) + list(train_hints), f"{model_cls.__name__} or TrainConfig"))
        try:
            target[key] = parse_value(text, hints[key])
        except ValueError as error:
            raise ConfigError(f"`{key}`: cannot parse {text!r} as {hints[key]}: {error}") from None


PACKAGED_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def packaged_configs() -> list[str]:
    """The names `--config` takes besides a path (files in `hierdiffuse_tf/configs/`)."""
    return sorted(os.path.splitext(n)[0] for n in os.listdir(PACKAGED_CONFIGS) if n.endswith(".yaml"))


def resolve_config_path(name_or_path: str) -> str:
    """A path as it is, or a packaged config's name (`hierdiffuse_paper`) as its file."""
    if os.path.exists(name_or_path):
        return name_or_path
    packaged = os.path.join(PACKAGED_CONFIGS, f"{name_or_path}.yaml")
    if os.sep not in name_or_path and os.path.exists(packaged):
        return packaged
    raise ConfigError(f"`--config {name_or_path}`: no such file, and no packaged config of that "
                      f"name (packaged: {packaged_configs()})")


def load_config_file(path: str) -> dict[str, Any]:
    """Reads `--config FILE`: JSON or YAML with optional `model:` and `train:` blocks.
    `path` may also name a packaged config (`packaged_configs()`)."""
    path = resolve_config_path(path)
    with open(path) as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        import yaml

        values = yaml.safe_load(text) or {}
    else:
        values = json.loads(text)
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    unknown = set(values) - {"model", "train"}
    if unknown:
        raise ConfigError(f"{path}: top-level keys must be 'model' and 'train'; got {sorted(unknown)}")
    for block in ("model", "train"):
        values[block] = values.get(block) or {}  # An empty YAML block reads as None.
        if not isinstance(values[block], dict):
            raise ConfigError(f"{path}: `{block}` must be a mapping of field: value. "
                              f"Received: {values[block]!r}")
    return values
