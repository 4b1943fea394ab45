"""HierDiffuse (paper section 3): interest fusion as guided, one-step denoising.

    h_L = f_L(long behaviours)                       (3.1)
    h_S = mean_k f_S(session k)                      (Eq. 3)
    x_{t*} = sqrt(ab_{t*}) x0 + sqrt(1 - ab_{t*}) eps (Eq. 1, 2; x0 = h_L)
    h_fusion = f_theta(x_{t*}, t*, guidance)         (Eq. 4, 6; one TCC step)
    logit = head([h_fusion, e_target, h_fusion * e_target, h_S])

In training eps is random and the TCC losses (Eq. 7-8) are added:
`BCE + alpha (L_recon + lambda(step) L_TR)`, each squared error averaged over
the d dimensions (`loss_reduction`; SPEC sums them). At inference eps = 0, so the
same request always gets the same score, and `sampler` picks the reverse path:
TCC one step (the default), DDIM k steps or DDPM every step from t*.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
from keras import ops

from hierdiffuse_tf.config import HierDiffuseConfig
from hierdiffuse_tf.diffusion import samplers, tcc
from hierdiffuse_tf.diffusion.denoiser import make_denoiser
from hierdiffuse_tf.diffusion.schedule import CosineSchedule
from hierdiffuse_tf.distribute import batch_random
from hierdiffuse_tf.guidance.guidance import GuidedDenoiser, semantic_groups
from hierdiffuse_tf.layers import CTRHead, FeatureEmbedding, LongTermEncoder, ShortTermEncoder
from hierdiffuse_tf.models.base import CTRModel, Forward
from hierdiffuse_tf.utils import serializable


class Encoded(NamedTuple):
    """One side (long or short) of `HierDiffuse.encode`."""

    pooled: Any  # (B, d): h_L or h_S.
    tokens: Any  # (B, L, d): the encoder's tokens (L = M, or K N for the sessions).
    mask: Any  # (B, L) bool: real behaviours.
    popular: Any  # (B, L) int: the SGD popularity flags.


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

    def __init__(self, config: HierDiffuseConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.embedding = FeatureEmbedding(c.num_items, c.num_cats, c.embed_dim, c.embed_combiner,
                                          c.num_hash_buckets, name="embedding")
        encoder_args = dict(num_layers=c.encoder_layers, num_heads=c.encoder_heads,
                            intermediate_dim=c.encoder_ffn_dim, dropout=c.dropout)
        self.long_encoder = LongTermEncoder(c.max_long, name="long_encoder", **encoder_args)
        self.short_encoder = ShortTermEncoder(c.session_len, name="short_encoder", **encoder_args)
        self.schedule = CosineSchedule(c.diffusion_steps, c.schedule_s, c.max_beta, name="schedule")
        denoiser = make_denoiser(c.backbone, c.denoiser_units, c.denoiser_layers, c.time_embed_dim,
                                 num_heads=c.encoder_heads, name="denoiser")
        self.guided = GuidedDenoiser(denoiser, mode=c.guidance, cond_dropout=c.cond_dropout,
                                     cfg_scale=c.cfg_scale, sgd_weights=c.sgd_weights,
                                     sgd_fixed_w=c.sgd_fixed_w, name="guided_denoiser")
        self.head = CTRHead(c.head_units, c.dropout, c.head_cross_layers, name="head")
        self.x0_norm = keras.layers.LayerNormalization(name="x0_norm") if c.normalize_x0 else None
        self.noise_seed = keras.random.SeedGenerator(name="diffusion_noise_seed")

    # The parts of the paper, in order.

    def encode(self, features, training=False) -> dict[str, Encoded]:
        """Embeddings and both encoders: `{"long": Encoded, "short": Encoded}` (the short
        side's K sessions flattened to K N tokens)."""
        long_mask = features["long_items"] > 0  # (B, M)
        short_mask = features["short_items"] > 0  # (B, K, N)
        long_emb = self.embedding(features["long_items"], features["long_cats"])  # (B, M, d)
        short_emb = self.embedding(features["short_items"], features["short_cats"])  # (B, K, N, d)
        h_long, long_tokens = self.long_encoder(long_emb, long_mask, training=training)
        h_short, short_tokens = self.short_encoder(short_emb, short_mask, training=training)
        K, N = self.config.num_sessions, self.config.session_len
        return {
            "long": Encoded(h_long, long_tokens, long_mask, features["long_popular"]),
            "short": Encoded(h_short, ops.reshape(short_tokens, (-1, K * N, self.config.embed_dim)),
                             ops.reshape(short_mask, (-1, K * N)),
                             ops.reshape(features["short_popular"], (-1, K * N))),
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
        pooled, tokens, mask, popular = encoded[guide]
        if self.config.guidance == "sgd":
            return (x0, *semantic_groups(tokens, mask, popular))
        present = ops.any(mask, axis=-1, keepdims=True)  # (B, 1)
        return x0, ops.expand_dims(pooled, 1), ops.ones_like(present, "float32"), present

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
        raise ValueError(f"`sampler` must be one of 'tcc', 'ddim', 'ddpm', 'none'. Received: {sampler!r}")

    def fuse_and_train(self, x0, conds, shares, present):
        """Training: h_fusion from a noisy x_{t*}, plus the TCC losses, in one denoiser call."""
        c = self.config
        batch = ops.shape(x0)[0]
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

    def user_side(self, features, sampler=None, steps=None):
        """Inference on the user side only: `(h_fusion, h_S)`, each `(B, d)`.

        Nothing here depends on the target, so a ranking request computes it
        once for all its candidates (`score_candidates`).
        """
        encoded = self.encode(features, training=False)
        h_fusion = self.fuse(*self.diffusion_inputs(encoded), sampler=sampler, steps=steps)
        return h_fusion, encoded["short"].pooled

    def score_candidates(self, h_fusion, h_short, items, cats):
        """Logits `(B,)` of targets `(B,)` for user vectors `(B, d)` (rows aligned)."""
        return self.head(h_fusion, self.embedding(items, cats), h_short, training=False)

    def forward(self, features, training=False, labels=None) -> Forward:
        if not training:
            h_fusion, h_short = self.user_side(features)
            return Forward(logit=self.score_candidates(h_fusion, h_short, features["target_item"],
                                                       features["target_cat"]))
        encoded = self.encode(features, training=True)
        h_fusion, aux, logs = self.fuse_and_train(*self.diffusion_inputs(encoded))
        target = self.embedding(features["target_item"], features["target_cat"])  # (B, d)
        logit = self.head(h_fusion, target, encoded["short"].pooled, training=True)
        return Forward(logit=logit, aux_loss=aux, logs=logs)
