"""HierDiffuse (paper section 3): interest fusion as guided, one-step denoising.

    tokens_L = f_L(long behaviours), tokens_S = f_S(each session)   (3.1)
    h_L = R_L(tokens_L; e_t)                          (readout, per target)
    h_S = mean_k R_S(tokens_S,k; e_t)                 (Eq. 3)
    x0 = LayerNorm(h_L)                               (SPEC 2b)
    x_{t*} = sqrt(ab_{t*}) x0 + sqrt(1 - ab_{t*}) eps (Eq. 1, 2)
    h_fusion = f_theta(x_{t*}, t*, guidance)          (Eq. 4, 6; one TCC step)
    logit = head([h_fusion, e_t, h_fusion * e_t, h_S, h_S * e_t])

The readout R is a target-attention pooling that starts as the masked mean
(`readout="target_attention"`) or the paper's mean (`"mean"`). The user side,
the encoders' tokens, does not depend on the target, so `rank` computes it once
per request (`user_side`); each candidate costs the readouts, the denoiser and
the head (`score_candidates`).

In training the TCC losses (Eq. 7-8) are added:
`BCE + alpha (L_recon + lambda(step) L_TR)`, each squared error averaged over
the d dimensions (`loss_reduction`; SPEC sums them), on noisy points. The head
reads h_fusion from the eps = 0 point, as at inference (`head_on_clean`), so
the same request always gets the same score, and `sampler` picks the reverse
path: TCC one step (the default), DDIM k steps or DDPM every step from t*.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import keras
from keras import ops

from hierdiffuse_tf.config import SAMPLERS, HierDiffuseConfig
from hierdiffuse_tf.diffusion import samplers, tcc
from hierdiffuse_tf.diffusion.denoiser import make_denoiser
from hierdiffuse_tf.diffusion.schedule import CosineSchedule
from hierdiffuse_tf.distribute import batch_random
from hierdiffuse_tf.guidance.guidance import GuidedDenoiser, semantic_groups
from hierdiffuse_tf.layers import CTRHead, FeatureEmbedding, MaskedPooling, SequenceEncoder, make_readout
from hierdiffuse_tf.layers.next_behaviour import next_behaviour_loss, pair_logits, pair_scorer, prefix_mean
from hierdiffuse_tf.models.base import CTRModel, Forward
from hierdiffuse_tf.models.sequence_base import embedded_sequence
from hierdiffuse_tf.utils import serializable


class UserTokens(NamedTuple):
    """The user side of `HierDiffuse`: the encoders' tokens, computed once per user."""

    long: Any  # (B, M, d): f_L's tokens.
    long_mask: Any  # (B, M) bool: real behaviours.
    long_popular: Any  # (B, M) int: the SGD popularity flags.
    short: Any  # (B, K, N, d): f_S's tokens, session by session.
    short_mask: Any  # (B, K, N) bool.
    short_popular: Any  # (B, K, N) int.


class Encoded(NamedTuple):
    """One side (long or short) of the interests read out for a target."""

    pooled: Any  # (B, d): h_L or h_S.
    tokens: Any  # (B, L, d): the encoder's tokens (L = M, or K N for the sessions).
    mask: Any  # (B, L) bool: real behaviours.
    popular: Any  # (B, L) int: the SGD popularity flags.
    weights: Any  # (B, L): the readout's token weights for the target (0 at padding).
    readout: Any  # The readout layer that pools these tokens.


@serializable
class HierDiffuse(CTRModel):
    """HierDiffuse with every switch of SPEC 2 read from a `HierDiffuseConfig`.

    Args:
        config: `HierDiffuseConfig`.
        **kwargs: base model arguments.

    Example:
    >>> model = HierDiffuse(HierDiffuseConfig(num_items=1000, num_cats=20))
    >>> model.compile(optimizer="adam")
    >>> model.fit(train_ds, validation_data=val_ds, epochs=2)
    >>> model.predict(test_ds)["ctr"]

    References:
        Ni et al., HierDiffuse: Progressive Diffusion for Robust Interest
        Fusion in CTR Prediction, EMNLP 2025 Industry Track.
    """

    config_cls = HierDiffuseConfig
    log_names = ("recon", "tr", "tr_weight", "dt")
    jit_train = True  # Measured faster under XLA on CPU (docs/performance.md).

    @classmethod
    def logged(cls, config) -> tuple[str, ...]:
        """The TCC terms where training computes them (a fusion stage with a TCC loss on), and
        the next-behaviour loss where it is on: no log that would only ever read 0."""
        tcc_on = config.sampler != "none" and (config.use_recon or config.use_tr)
        return (cls.log_names if tcc_on else ()) + (("next",) if config.next_behaviour_weight else ())

    def __init__(self, config: HierDiffuseConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.embedding = FeatureEmbedding(c.num_items, c.num_cats, c.embed_dim, c.embed_combiner,
                                          c.num_hash_buckets, name="embedding")
        encoder_args = dict(num_layers=c.encoder_layers, num_heads=c.encoder_heads,
                            intermediate_dim=c.encoder_ffn_dim, dropout=c.dropout,
                            gated=c.encoder_gate)
        long_layers = c.encoder_layers if c.long_encoder_layers < 0 else c.long_encoder_layers
        self.long_encoder = SequenceEncoder(c.max_long, chunk_size=c.long_chunk, name="long_encoder",
                                            **{**encoder_args, "num_layers": long_layers})
        self.short_encoder = SequenceEncoder(c.session_len, skip_empty=c.skip_empty_sessions,
                                             name="short_encoder", **encoder_args)
        self.long_readout = make_readout(c.readout, c.readout_units, c.readout_recency, name="long_readout")
        self.short_readout = make_readout(c.readout, c.readout_units, c.readout_recency,
                                          name="short_readout")
        self.session_pool = MaskedPooling(name="session_pool")  # Eq. 3 over the sessions.
        self.session_recency = (
            keras.layers.Embedding(c.num_sessions, c.embed_dim, embeddings_initializer="zeros",
                                   name="session_recency") if c.session_recency else None)
        self.schedule = CosineSchedule(c.diffusion_steps, c.schedule_s, c.max_beta, name="schedule")
        denoiser = make_denoiser(c.backbone, c.denoiser_units, c.denoiser_layers, c.time_embed_dim,
                                 num_heads=c.encoder_heads, name="denoiser")
        self.guided = GuidedDenoiser(denoiser, mode=c.guidance, cond_dropout=c.cond_dropout,
                                     cfg_scale=c.cfg_scale, sgd_weights=c.sgd_weights,
                                     sgd_fixed_w=c.sgd_fixed_w, name="guided_denoiser")
        self.head = CTRHead(c.head_units, c.dropout, c.head_cross_layers,
                            context_cross=c.head_short_cross, name="head")
        self.x0_norm = keras.layers.LayerNormalization(name="x0_norm") if c.normalize_x0 else None
        self.noise_seed = keras.random.SeedGenerator(name="diffusion_noise_seed")
        self.next_net = pair_scorer(c.embed_dim, "next") if c.next_behaviour_weight else []

    # The parts of the paper, in order.

    def encode(self, features, training=False) -> UserTokens:
        """Embeddings and both encoders: the user side, which no target changes."""
        long_mask = features["long_items"] > 0  # (B, M)
        short_mask = features["short_items"] > 0  # (B, K, N)
        long_emb = self.embedding(features["long_items"], features["long_cats"])  # (B, M, d)
        short_emb = self.embedding(features["short_items"], features["short_cats"])  # (B, K, N, d)
        return UserTokens(
            self.long_encoder(long_emb, long_mask, training=training), long_mask,
            features["long_popular"],
            self.short_encoder(short_emb, short_mask, training=training), short_mask,
            features["short_popular"])

    def read_out(self, user: UserTokens, target) -> dict[str, Encoded]:
        """h_L and h_S for each row's target `(B, d)`: `{"long": Encoded, "short": Encoded}`
        (the short side's K sessions flattened to K N tokens).

        Each side's token weights are computed once: the sessions (Eq. 3) and
        the SGD groups pool the same short tokens for the same target, so they
        share one activation-unit pass.
        """
        c = self.config
        K, N, d = c.num_sessions, c.session_len, c.embed_dim
        h_long, long_weights = self.long_readout(user.long, user.long_mask, query=target,
                                                 return_weights=True)  # (B, d), (B, M)
        short = ops.reshape(user.short, (-1, K * N, d))
        short_mask = ops.reshape(user.short_mask, (-1, K * N))
        # Only the weights: each session pools its own tokens with them below.
        _, short_weights = self.short_readout(short, short_mask, query=target,
                                              return_weights=True)  # (B, K N)
        # Each session's h_S_k from its own tokens, then Eq. 3 over the non-empty sessions.
        sessions = self.short_readout.pool_weighted(
            user.short, ops.reshape(short_weights, (-1, K, N)), user.short_mask)  # (B, K, d)
        if self.session_recency is not None:  # Session K - 1 is the newest.
            sessions = sessions + self.session_recency(ops.arange(K - 1, -1, -1))
        h_short = self.session_pool(sessions, ops.any(user.short_mask, axis=-1))  # (B, d)
        return {
            "long": Encoded(h_long, user.long, user.long_mask, user.long_popular, long_weights,
                            self.long_readout),
            "short": Encoded(h_short, short, short_mask, ops.reshape(user.short_popular, (-1, K * N)),
                             short_weights, self.short_readout),
        }

    def diffusion_inputs(self, encoded: dict[str, Encoded]):
        """x0 and the guidance conditions for the configured direction (Table 2e).

        Returns:
            `(x0 (B, d), conds (B, G, d) or None, shares (B, G), present (B, G))`.
        """
        source, guide = self.config.direction.split("_to_")
        x0 = encoded[source].pooled
        if self.x0_norm is not None:
            x0 = self.x0_norm(x0)
        if guide == "none":
            return x0, None, None, None
        side = encoded[guide]
        if self.config.guidance == "sgd":
            def pool(x, group_mask):  # The side's token weights, restricted to the group.
                weights = side.weights * ops.cast(group_mask, x.dtype)
                return side.readout.pool_weighted(x, weights, group_mask)

            return (x0, *semantic_groups(side.tokens, side.mask, side.popular, pool))
        present = ops.any(side.mask, axis=-1, keepdims=True)  # (B, 1)
        return x0, ops.expand_dims(side.pooled, 1), ops.ones_like(present, "float32"), present

    def fuse(self, x0, conds, shares, present, sampler=None, steps=None):
        """Inference: h_fusion from x_{t*} with eps = 0, by the chosen reverse path."""
        sampler = sampler or self.config.sampler
        t_star = self.config.start_step
        x_start = float(self.schedule.alpha_bar_table[t_star]) ** 0.5 * x0

        def predict_x0(x_t, t):
            return self.guided(x_t, t, conds, shares, present, training=False)

        if sampler == "none":  # No fusion stage at all (h_fusion = x0): the benchmark's floor.
            return x0
        if sampler == "tcc":
            return samplers.tcc_sample(predict_x0, x_start, t_star)
        if sampler == "ddim":
            return samplers.ddim_sample(predict_x0, x_start, t_star,
                                        steps or self.config.sampler_steps, self.schedule)
        if sampler == "ddpm":
            return samplers.ddpm_sample(predict_x0, x_start, t_star, self.schedule)
        raise ValueError(f"`sampler` must be one of {list(SAMPLERS)}. Received: {sampler!r}")

    def fuse_and_train(self, x0, conds, shares, present):
        """Training: h_fusion from x_{t*}, plus the TCC losses, in one denoiser call.

        x_{t*} is the eps = 0 point that inference uses (`head_on_clean`) or a
        noisy one (the paper's Eq. 1); the TCC losses always take noisy points.
        """
        c = self.config
        batch = ops.shape(x0)[0]
        if c.head_on_clean:
            eps = ops.zeros_like(x0)
        else:
            eps = batch_random(keras.random.normal, ops.shape(x0), seed=self.noise_seed, dtype=x0.dtype)
        t_star = ops.full((batch,), c.start_step, "int32")
        x_star = self.schedule.q_sample(x0, t_star, eps)
        if not (c.use_recon or c.use_tr):
            return self.guided(x_star, t_star, conds, shares, present, training=True), 0.0, {}
        step = self.schedule_step()
        dt = tcc.curriculum_dt(step, batch, c.schedule_steps, c.diffusion_steps, self.noise_seed,
                               c.curriculum_switch, c.dt_small, c.dt_large)
        t = self.schedule.sample_steps(batch, self.noise_seed)
        t_prev = ops.maximum(t - dt, 0)
        x0_target = ops.stop_gradient(x0) if c.stop_gradient_x0 else x0
        eps_tcc = batch_random(keras.random.normal, ops.shape(x0), seed=self.noise_seed, dtype=x0.dtype)
        x_t = self.schedule.q_sample(x0_target, t, eps_tcc)
        x_prev = self.schedule.q_sample(x0_target, t_prev, eps_tcc)

        def tile(v):
            return None if v is None else ops.concatenate([v, v, v], axis=0)

        preds = self.guided(ops.concatenate([x_star, x_t, x_prev], axis=0),
                            ops.concatenate([t_star, t, t_prev], axis=0),
                            tile(conds), tile(shares), tile(present), training=True, copies=3)
        h_fusion, pred_t, pred_prev = ops.split(preds, 3, axis=0)
        recon, trajectory = tcc.tcc_losses(pred_t, pred_prev, x0_target, t_prev, c.loss_reduction)
        weight = tcc.lambda_schedule(step, c.schedule_steps, c.lambda_start, c.lambda_end)
        aux = c.alpha * (float(c.use_recon) * recon + float(c.use_tr) * weight * trajectory)
        logs = {"recon": recon, "tr": trajectory, "tr_weight": weight,
                "dt": ops.mean(ops.cast(dt, "float32"))}
        return h_fusion, aux, logs

    def next_behaviour(self, features):
        """DIEN's auxiliary loss on the embeddings, each prefix's mean as the state."""
        seq, mask = embedded_sequence(self.embedding, features)  # (B, M + K N, d), (B, M + K N)
        return next_behaviour_loss(functools.partial(pair_logits, self.next_net),
                                   prefix_mean(seq, mask), seq, mask)

    def user_side(self, features) -> UserTokens:
        """Inference on the user side only: the encoders' tokens and masks.

        Nothing here depends on the target, so a ranking request computes it
        once for all its candidates (`score_candidates`).
        """
        return self.encode(features, training=False)

    def score_candidates(self, user: UserTokens, items, cats, sampler=None, steps=None):
        """Logits `(C,)` of targets `(C,)`: the readouts, the fusion (by `sampler`,
        default the config's) and the head.

        `user` has C rows aligned with the targets, or one row that every target
        shares (`rank`). One row is not tiled: its tokens broadcast against the
        targets in the readouts, so what depends on the user alone (the
        activation unit's key term, the groups' shares) is computed once.
        """
        target = self.embedding(items, cats)  # (C, d)
        encoded = self.read_out(user, target)
        rows = ops.shape(target)[0]

        def per_target(v):  # A user-only value of one row, repeated for each target.
            return None if v is None else ops.broadcast_to(v, (rows, *v.shape[1:]))

        inputs = [per_target(v) for v in self.diffusion_inputs(encoded)]
        h_fusion = self.fuse(*inputs, sampler=sampler, steps=steps)
        return self.head(h_fusion, target, per_target(encoded["short"].pooled), training=False)

    def fusion_inputs(self, features):
        """`diffusion_inputs` for the rows' own targets, at inference (benchmarks, tests)."""
        target = self.embedding(features["target_item"], features["target_cat"])
        return self.diffusion_inputs(self.read_out(self.user_side(features), target))

    def score(self, features, sampler=None, steps=None):
        """Logits `(B,)` of the rows of `features` by the chosen reverse path."""
        return self.score_candidates(self.user_side(features), features["target_item"],
                                     features["target_cat"], sampler=sampler, steps=steps)

    def forward(self, features, training=False, labels=None) -> Forward:
        if not training:
            return Forward(logit=self.score(features))
        user = self.encode(features, training=True)
        target = self.embedding(features["target_item"], features["target_cat"])  # (B, d)
        encoded = self.read_out(user, target)
        inputs = self.diffusion_inputs(encoded)
        if self.config.sampler == "none":  # No fusion stage (Table 2f): h_fusion = x0, nothing to denoise.
            h_fusion, aux, logs = inputs[0], 0.0, {}
        else:
            h_fusion, aux, logs = self.fuse_and_train(*inputs)
        logit = self.head(h_fusion, target, encoded["short"].pooled, training=True)
        if self.next_net:
            logs["next"] = self.next_behaviour(features)
            aux = aux + self.config.next_behaviour_weight * logs["next"]
        return Forward(logit=logit, aux_loss=aux, logs=logs)
